/* Style references: the studio's chips, uploads by drop or picker, and "Use as style" links.
 *
 * In the studio ([data-style-refs] inside #studio-form) each chip carries a hidden
 * style_image_id and a style_weight slider. While any chip is present the form paints a style
 * job: htmx's request (and the plain form's action) goes to /partials/generate/style instead of
 * /partials/generate. New references are uploaded to POST /api/uploads with the page's CSRF token.
 *
 * The chosen ids are remembered in localStorage, so "Use as style" on another painting's page
 * ([data-use-style]) adds that image to them rather than starting over.
 */
(function () {
  "use strict";

  var PROMPT_ROUTE = "/partials/generate";
  var STYLE_ROUTE = "/partials/generate/style";
  var STORAGE_KEY = "studio.styleRefs";
  var DEFAULT_MAX = 4;

  function csrfToken(root) {
    if (root && root.dataset.csrfToken) return root.dataset.csrfToken;
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function remembered() {
    try {
      var ids = JSON.parse(window.localStorage.getItem(STORAGE_KEY) || "[]");
      return Array.isArray(ids) ? ids.map(String).filter(function (id) { return /^\d+$/.test(id); }) : [];
    } catch (error) {
      return [];
    }
  }

  function remember(ids) {
    try {
      window.localStorage.setItem(STORAGE_KEY, JSON.stringify(ids));
    } catch (error) {
      /* private mode: the chips still work, they are just not remembered */
    }
  }

  // -- "Use as style" on a painting's page ----------------------------------------------------

  function setupUseLinks() {
    document.querySelectorAll("a[data-use-style]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        var id = link.dataset.useStyle;
        var ids = remembered().filter(function (other) { return other !== id; });
        ids.push(id);
        ids = ids.slice(-DEFAULT_MAX);
        event.preventDefault();
        window.location.assign("/?" + ids.map(function (each) { return "style=" + encodeURIComponent(each); }).join("&"));
      });
    });
  }

  // -- the studio's chips ---------------------------------------------------------------------

  function setupStudio(root) {
    var form = root.closest("form");
    var chips = root.querySelector("[data-role=chips]");
    var template = root.querySelector("[data-role=chip-template]");
    var options = root.querySelector("[data-role=options]");
    var status = root.querySelector("[data-role=status]");
    var drop = root.querySelector("[data-role=drop]");
    var fileInput = root.querySelector("[data-role=file]");
    var method = root.querySelector("[data-role=method]");
    var strength = form.elements.namedItem("style_strength");
    var strengthValue = root.querySelector("[data-role=strength-value]");
    var max = parseInt(root.dataset.max, 10) || DEFAULT_MAX;
    var ipAdapterModels = null; // model names that have an IP-Adapter, once /api/models answers

    function ids() {
      return Array.prototype.map.call(chips.querySelectorAll(".style-chip"), function (chip) {
        return chip.dataset.imageId;
      });
    }

    function sync() {
      var present = ids().length > 0;
      options.hidden = !present;
      form.setAttribute("action", present ? STYLE_ROUTE : PROMPT_ROUTE);
      root.classList.toggle("has-refs", present);
      drop.hidden = ids().length >= max;
      remember(ids());
    }

    function wireChip(chip) {
      var weight = chip.querySelector("[data-role=weight]");
      var value = chip.querySelector("[data-role=weight-value]");
      weight.addEventListener("input", function () { value.textContent = weight.value; });
      chip.querySelector("[data-action=remove-style]").addEventListener("click", function () {
        chip.remove();
        status.textContent = "Removed style reference " + chip.dataset.imageId + ".";
        sync();
      });
    }

    function addChip(id) {
      id = String(id);
      if (ids().indexOf(id) !== -1) return;
      var chip = template.content.firstElementChild.cloneNode(true);
      chip.dataset.imageId = id;
      var thumb = chip.querySelector("[data-role=thumb]");
      thumb.src = "/api/images/" + encodeURIComponent(id) + "/thumb";
      thumb.alt = "Style reference " + id;
      chip.querySelector("[data-role=id]").value = id;
      chip.querySelector("[data-role=weight]").setAttribute("aria-label", "Weight of style reference " + id);
      chip.querySelector("[data-action=remove-style]").setAttribute("aria-label", "Remove style reference " + id);
      chips.appendChild(chip);
      wireChip(chip);
      sync();
    }

    function upload(files) {
      var room = max - ids().length;
      var chosen = Array.prototype.filter.call(files, function (file) { return /^image\//.test(file.type); }).slice(0, room);
      if (!chosen.length) {
        status.textContent = room > 0 ? "Drop an image file (PNG, JPEG or WebP)." : "Remove a reference to add another (at most " + max + ").";
        return;
      }
      status.textContent = "Uploading " + chosen.length + (chosen.length === 1 ? " image" : " images") + "…";
      chosen.reduce(function (previous, file) {
        return previous.then(function () {
          var body = new FormData();
          body.append("file", file);
          return fetch("/api/uploads", {
            method: "POST",
            body: body,
            credentials: "same-origin",
            headers: { "X-CSRF-Token": csrfToken(root) },
          }).then(function (response) {
            return response.json().then(function (data) {
              if (!response.ok) throw new Error(file.name + ": " + (data.detail || "could not upload"));
              addChip(data.id);
            });
          });
        });
      }, Promise.resolve())
        .then(function () { status.textContent = "Added. Painting now uses the style references."; })
        .catch(function (error) { status.textContent = error.message; });
    }

    function checkMethod() {
      if (!method || !ipAdapterModels) return;
      var model = form.elements.namedItem("model");
      var supported = model && ipAdapterModels.indexOf(model.value) !== -1;
      var option = method.querySelector('option[value="ip-adapter"]');
      if (option) option.disabled = !supported;
      if (!supported && method.value === "ip-adapter") method.value = "shared-attention";
    }

    chips.querySelectorAll(".style-chip").forEach(wireChip);
    if (strength && strengthValue) strength.addEventListener("input", function () { strengthValue.textContent = strength.value; });

    fileInput.addEventListener("change", function () {
      upload(fileInput.files);
      fileInput.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      drop.addEventListener(name, function (event) {
        event.preventDefault();
        event.stopPropagation();
        drop.classList.add("is-dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      drop.addEventListener(name, function (event) {
        event.preventDefault();
        event.stopPropagation();
        drop.classList.remove("is-dragging");
      });
    });
    drop.addEventListener("drop", function (event) {
      if (event.dataTransfer && event.dataTransfer.files) upload(event.dataTransfer.files);
    });

    // htmx reads hx-post once; the path of each request is chosen here instead.
    document.body.addEventListener("htmx:configRequest", function (event) {
      if (event.detail.elt !== form) return;
      event.detail.path = ids().length ? STYLE_ROUTE : PROMPT_ROUTE;
    });

    var model = form.elements.namedItem("model");
    if (model) model.addEventListener("change", checkMethod);
    fetch("/api/models", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (models) {
        ipAdapterModels = models.filter(function (each) { return each.ip_adapter; }).map(function (each) { return each.name; });
        checkMethod();
      })
      .catch(function () { /* the server checks the method anyway */ });

    sync();
  }

  function start() {
    setupUseLinks();
    document.querySelectorAll("[data-style-refs]").forEach(setupStudio);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
