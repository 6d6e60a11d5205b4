/* Compare page: "this one is better" records a preference of its image over each other column's.
 *
 * Each button carries data-prefer (the winner's image id) and data-losers (the other images). One
 * POST /api/preferences {winner_image_id, loser_image_id} is sent per loser.
 */
(function () {
  "use strict";

  function post(csrf, winner, loser) {
    return fetch("/api/preferences", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ winner_image_id: winner, loser_image_id: loser }),
    }).then(function (response) {
      if (response.ok) return;
      return response.json().catch(function () { return {}; }).then(function (data) {
        throw new Error("The preference was not recorded: " + (data.detail || response.status));
      });
    });
  }

  function setup(root) {
    var status = root.querySelector("[data-role=compare-status]");
    root.addEventListener("click", function (event) {
      var button = event.target.closest("[data-prefer]");
      if (!button) return;
      var winner = parseInt(button.dataset.prefer, 10);
      var losers = (button.dataset.losers || "").split(",").filter(Boolean).map(function (id) { return parseInt(id, 10); });
      button.disabled = true;
      Promise.all(losers.map(function (loser) { return post(root.dataset.csrf, winner, loser); }))
        .then(function () {
          root.querySelectorAll(".compare-head").forEach(function (head) { head.classList.remove("is-winner"); });
          button.closest(".compare-head").classList.add("is-winner");
          if (status) status.textContent = "Preference recorded.";
        })
        .catch(function (error) {
          if (status) status.textContent = error.message;
        })
        .finally(function () { button.disabled = false; });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-compare]").forEach(setup);
  });
})();

/* A lineage page's Compare selected: two to four ticks, else the message by the button, in place. */
(function () {
  "use strict";

  var MIN = 2;
  var MAX = 4;

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-compare-picks")) return;
    var ticked = document.querySelectorAll('input[name=ids][form="' + form.id + '"]:checked').length;
    if (ticked >= MIN && ticked <= MAX) return;
    event.preventDefault();
    var message = form.querySelector("[data-role=compare-error]");
    message.textContent = "Tick " + MIN + " to " + MAX + " paintings to compare (" + ticked + " ticked).";
    message.hidden = false;
    message.focus();
  });
})();
