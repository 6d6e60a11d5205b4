/* Studio: load a PNG's prompt and parameters into the form, by dropping it or picking it.
 *
 * The file is posted to POST /api/parameters/read, which reads our own chunk or an
 * AUTOMATIC1111-style "parameters" chunk; each returned value fills its form field.
 */
(function () {
  "use strict";

  var FIELDS = ["prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height"];

  function setSelect(select, value) {
    if (!select || !value) return false;
    for (var i = 0; i < select.options.length; i++) {
      if (select.options[i].value === value) {
        select.value = value;
        return true;
      }
    }
    return false;
  }

  function fill(form, params, status) {
    if (params.source === "none") {
      status.textContent = "This PNG carries no parameters.";
      return;
    }
    FIELDS.forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (field && params[name] !== null && params[name] !== undefined) field.value = String(params[name]);
    });
    setSelect(form.elements.namedItem("scheduler"), params.scheduler);
    var regions = form.elements.namedItem("regions");
    if (regions && Array.isArray(params.regions)) {
      // The region editor (region_editor.js) redraws from the field when it changes.
      regions.value = params.regions.length ? JSON.stringify(params.regions) : "";
      regions.dispatchEvent(new Event("change"));
    }
    var modelKnown = setSelect(form.elements.namedItem("model"), params.model);
    var parent = form.elements.namedItem("parent_id");
    if (parent) parent.value = "";
    var from = params.source === "a1111" ? "an AUTOMATIC1111 PNG" : "a studio PNG";
    status.textContent = "Loaded the parameters of " + from +
      (params.model && !modelKnown ? " (model " + params.model + " is not installed here)" : "") + ".";
  }

  function load(form, file, status) {
    if (!file) return;
    var body = new FormData();
    body.append("file", file);
    status.textContent = "Reading " + file.name + "…";
    var token = form.elements.namedItem("csrf_token");
    var headers = token ? { "X-CSRF-Token": token.value } : {};
    fetch("/api/parameters/read", { method: "POST", body: body, credentials: "same-origin", headers: headers })
      .then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) throw new Error(data.detail || "could not read this file");
          return data;
        });
      })
      .then(function (params) { fill(form, params, status); })
      .catch(function (error) { status.textContent = error.message; });
  }

  function setup(zone) {
    var form = document.getElementById(zone.dataset.form);
    var input = zone.querySelector("input[type=file]");
    var status = zone.querySelector("[data-role=png-status]");
    if (!form || !status) return;
    if (input) input.addEventListener("change", function () { load(form, input.files[0], status); });
    [zone, form].forEach(function (target) {
      target.addEventListener("dragover", function (event) {
        if (!event.dataTransfer || Array.prototype.indexOf.call(event.dataTransfer.types, "Files") === -1) return;
        event.preventDefault();
        target.classList.add("is-over");
      });
      target.addEventListener("dragleave", function () { target.classList.remove("is-over"); });
      target.addEventListener("drop", function (event) {
        if (!event.dataTransfer || !event.dataTransfer.files.length) return;
        event.preventDefault();
        target.classList.remove("is-over");
        load(form, event.dataTransfer.files[0], status);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-png-drop]").forEach(setup);
  });
})();
