/* The painting's page: the prompt as a strip of words; choosing a word lays its heat map over the
 * painting (GET /api/images/{id}/attention/{index}.png), choosing it again takes the map away.
 *
 * The strip arrives as an htmx fragment, so clicks are handled on the document. Each word is a
 * button with aria-pressed; the status line (aria-live) says what the map shows.
 */
(function () {
  "use strict";

  function where(x, y) {
    var across = x < 1 / 3 ? "left" : x > 2 / 3 ? "right" : "centre";
    var down = y < 1 / 3 ? "top" : y > 2 / 3 ? "bottom" : "middle";
    return down === "middle" && across === "centre" ? "the centre" : "the " + down + " " + across;
  }

  function describe(chip) {
    var coverage = Math.round(parseFloat(chip.getAttribute("data-coverage") || "0") * 100);
    var peak = where(parseFloat(chip.getAttribute("data-peak-x")), parseFloat(chip.getAttribute("data-peak-y")));
    var text = "“" + chip.getAttribute("data-word") + "” is strong over " + coverage + "% of the painting, strongest at " + peak + ".";
    if (chip.classList.contains("word-weak")) text += " It barely landed.";
    return text;
  }

  function choose(chip) {
    var panel = chip.closest("[data-attention]");
    if (!panel) return;
    var overlay = panel.querySelector("[data-attention-overlay]");
    var status = panel.querySelector("[data-attention-status]");
    var wasOn = chip.getAttribute("aria-pressed") === "true";
    panel.querySelectorAll(".word-chip[aria-pressed]").forEach(function (other) {
      other.setAttribute("aria-pressed", "false");
    });
    if (wasOn) {
      overlay.hidden = true;
      overlay.removeAttribute("src");
      if (status) status.textContent = "No word shown.";
      return;
    }
    chip.setAttribute("aria-pressed", "true");
    overlay.src = chip.getAttribute("data-word-map");
    overlay.hidden = false;
    if (status) status.textContent = describe(chip);
  }

  document.addEventListener("click", function (event) {
    var chip = event.target.closest && event.target.closest("button.word-chip[data-word-map]");
    if (chip) choose(chip);
  });
})();
