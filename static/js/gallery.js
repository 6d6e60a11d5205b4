// Galleries: dialogs opened by buttons, copy-to-clipboard, and confirm-before-submit.
(function () {
  "use strict";

  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () { field.select(); });
    } else {
      field.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* the text stays selected to copy by hand */ }
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    var opener = target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-open-dialog"));
      if (dialog && typeof dialog.showModal === "function") dialog.showModal();
      return;
    }
    var copier = target.closest("[data-copy]");
    if (copier) copy(copier);
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.hasAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    // A gallery page reached right after making a link opens its share dialog again.
    if (window.location.search.indexOf("shared=1") !== -1) {
      var dialog = document.getElementById("share-dialog");
      if (dialog && typeof dialog.showModal === "function") dialog.showModal();
    }
  });
})();

/* A gallery's ↑ and ↓ move a painting in place: the order is saved in the background, no reload. */
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-item-form") || !button) return;
    var action = button.value;
    if (action !== "up" && action !== "down") return;
    var item = form.closest(".album-item");
    var neighbour = item && (action === "up" ? item.previousElementSibling : item.nextElementSibling);
    event.preventDefault();
    if (!neighbour) return;
    var data = new FormData(form);
    data.set("action", action);
    // form.action is the buttons named "action" here, not the URL.
    fetch(form.getAttribute("action"), { method: "POST", body: data, credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { window.location.reload(); return; }
      if (action === "up") item.parentNode.insertBefore(item, neighbour);
      else item.parentNode.insertBefore(neighbour, item);
      button.focus();
    });
  });
})();
