/* The studio's compose form keeps the eye where the work is.
 *
 * - The prompt and negative prompt are kept as a draft in localStorage, so a reload or a trip to
 *   another page brings them back (a refine, which fills the form itself, wins over the draft).
 * - Ctrl+Enter (Cmd+Enter on a Mac) paints from anywhere in the form.
 * - A new card is scrolled into view when it is not already.
 * - A refusal about one field (the fragment's data-field) is shown next to that field, which is
 *   marked invalid and focused; any other refusal stays by the Paint button and takes the focus.
 */
(function () {
  "use strict";

  var DRAFT_KEY = "studio.draft";
  var DRAFTED = ["prompt", "negative_prompt"];

  function form() { return document.getElementById("studio-form"); }

  function readDraft() {
    try { return JSON.parse(window.localStorage.getItem(DRAFT_KEY) || "{}") || {}; } catch (e) { return {}; }
  }

  function saveDraft(studio) {
    var draft = {};
    DRAFTED.forEach(function (name) {
      var field = studio.elements.namedItem(name);
      if (field) draft[name] = field.value;
    });
    try { window.localStorage.setItem(DRAFT_KEY, JSON.stringify(draft)); } catch (e) { /* private mode: no draft */ }
  }

  function restoreDraft(studio) {
    var parent = studio.elements.namedItem("parent_id");
    var prompt = studio.elements.namedItem("prompt");
    // A refine or a refused form arrives filled in; the draft only fills an empty form.
    if ((parent && parent.value) || !prompt || prompt.value) return;
    var draft = readDraft();
    DRAFTED.forEach(function (name) {
      var field = studio.elements.namedItem(name);
      if (field && typeof draft[name] === "string" && !field.value) field.value = draft[name];
    });
  }

  function clearFieldErrors(studio) {
    studio.querySelectorAll(".field-alert").forEach(function (alert) { alert.remove(); });
    studio.querySelectorAll("[aria-invalid=true]").forEach(function (field) {
      field.removeAttribute("aria-invalid");
      field.removeAttribute("aria-describedby");
    });
  }

  function inView(element) {
    var box = element.getBoundingClientRect();
    var header = document.querySelector(".site-header");
    var top = header ? header.getBoundingClientRect().bottom : 0;
    return box.top >= top && box.top < window.innerHeight - 80;
  }

  function showRefusal(studio, box) {
    var alert = box.querySelector(".alert");
    if (!alert) return;
    var name = alert.getAttribute("data-field");
    var field = name ? studio.elements.namedItem(name) : null;
    if (field && field.focus) {
      var wrapper = field.closest(".field") || field.parentNode;
      alert.classList.add("field-alert");
      alert.id = "error-" + name;
      wrapper.appendChild(alert);
      field.setAttribute("aria-invalid", "true");
      field.setAttribute("aria-describedby", alert.id);
      field.focus();
      if (!inView(field)) field.scrollIntoView({ block: "center" });
      return;
    }
    alert.focus();
    if (!inView(alert)) alert.scrollIntoView({ block: "center" });
  }

  function setUp() {
    var studio = form();
    if (!studio) return;
    restoreDraft(studio);
    studio.addEventListener("input", function () { saveDraft(studio); });
    studio.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        if (typeof studio.requestSubmit === "function") studio.requestSubmit();
        else studio.querySelector("button[type=submit]").click();
      }
    });
    studio.addEventListener("submit", function () { clearFieldErrors(studio); saveDraft(studio); });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var target = event.detail.target;
      if (!target) return;
      if (target.id === "form-errors") {
        showRefusal(studio, target);
      } else if (target.id === "results") {
        var card = target.querySelector(".job");
        if (card && !inView(card)) card.scrollIntoView({ block: "start" });
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setUp);
  else setUp();
})();

/* A form refused without JavaScript comes back with [data-refused] by it: move the focus there. */
(function () {
  "use strict";

  function focusRefusal() {
    var refusal = document.querySelector("[data-refused]");
    if (!refusal) return;
    var form = refusal.closest("form");
    var field = form && form.querySelector("[aria-invalid=true]");
    var target = field || refusal;
    target.focus();
    target.scrollIntoView({ block: "center" });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", focusRefusal);
  else focusRefusal();
})();
