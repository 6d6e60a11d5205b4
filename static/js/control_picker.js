/* The studio form's ControlNet guide: a guide image, its pre-processor, the ControlNet and its weight and span.
 *
 * The picker ([data-control-picker] in #studio-form) shows itself only when a ControlNet in the models
 * folder fits the chosen model (GET /api/controlnets?model=NAME); otherwise it hides and its hidden
 * control field is disabled, so nothing is sent. The field is the truth: JSON of one guide,
 * [{"image_id", "kind", "model", "weight", "start", "end"}], read when the page opens (a refine
 * carries its guide over) and written on every change. A new guide image is uploaded to
 * POST /api/uploads; the guide and its map (POST /api/control/preview, at the form's size when one
 * is set) are shown side by side before painting.
 */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function side(form, name) {
    var input = form.elements.namedItem(name);
    var value = input && !input.disabled ? parseInt(input.value, 10) : NaN;
    return value >= 64 && value <= 2048 && value % 8 === 0 ? value : null;
  }

  function setUp(root) {
    var form = root.closest("form");
    var modelSelect = form.elements.namedItem("model");
    var value = root.querySelector("[data-role=control-value]");
    var upload = root.querySelector("[data-role=upload]");
    var imageSelect = root.querySelector("[data-role=image]");
    var kind = root.querySelector("[data-role=kind]");
    var controlnet = root.querySelector("[data-role=model]");
    var weight = root.querySelector("[data-role=weight]");
    var weightShown = root.querySelector("[data-role=weight-shown]");
    var start = root.querySelector("[data-role=start]");
    var end = root.querySelector("[data-role=end]");
    var previews = root.querySelector("[data-role=previews]");
    var sourceView = root.querySelector("[data-role=source-view]");
    var mapView = root.querySelector("[data-role=map-view]");
    var clear = root.querySelector("[data-action=clear-control]");
    var status = root.querySelector("[data-role=status]");
    var imageId = null;
    var mapUrl = null;
    var previewAsked = 0;

    function readField() {
      try {
        var guides = JSON.parse(value.value || "[]");
        return Array.isArray(guides) && guides.length ? guides[0] : null;
      } catch (error) {
        return null;
      }
    }

    function choose(select, wanted) {
      var found = Array.prototype.some.call(select.options, function (option) { return option.value === String(wanted); });
      if (found) select.value = String(wanted);
      return found;
    }

    function write() {
      var guide = imageId && controlnet.value ? [{
        image_id: imageId,
        kind: kind.value,
        model: controlnet.value,
        weight: parseFloat(weight.value),
        start: parseFloat(start.value) || 0,
        end: isNaN(parseFloat(end.value)) ? 1 : parseFloat(end.value),
      }] : [];
      value.value = guide.length ? JSON.stringify(guide) : "";
      clear.disabled = !imageId;
    }

    function showPreview() {
      if (!imageId) {
        previews.hidden = true;
        return;
      }
      previews.hidden = false;
      sourceView.src = "/api/images/" + imageId + "/thumb";
      var body = { image_id: imageId, kind: kind.value };
      var width = side(form, "width");
      var height = side(form, "height");
      if (width && height) {
        body.width = width;
        body.height = height;
      }
      var asked = ++previewAsked;
      status.textContent = "Computing the " + kind.value + " map…";
      fetch(root.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(body),
      })
        .then(function (response) {
          if (!response.ok) {
            return response.json().then(function (data) {
              var detail = typeof data.detail === "string" ? data.detail : "the map could not be made";
              throw new Error(detail);
            });
          }
          return response.blob();
        })
        .then(function (blob) {
          if (asked !== previewAsked) return; // a newer choice is on its way
          if (mapUrl) URL.revokeObjectURL(mapUrl);
          mapUrl = URL.createObjectURL(blob);
          mapView.src = mapUrl;
          status.textContent = "The painting follows this map at weight " + weight.value + ".";
        })
        .catch(function (error) {
          if (asked === previewAsked) status.textContent = error.message;
        });
    }

    function changed() {
      write();
      showPreview();
    }

    function useImage(id) {
      imageId = id ? parseInt(id, 10) : null;
      if (!choose(imageSelect, imageId || "")) imageSelect.value = "";
      changed();
    }

    upload.addEventListener("change", function () {
      var file = upload.files && upload.files[0];
      if (!file) return;
      status.textContent = "Uploading " + file.name + "…";
      var body = new FormData();
      body.append("file", file);
      fetch(root.dataset.uploadUrl, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfToken() },
      })
        .then(function (response) {
          return response.json().then(function (data) {
            if (!response.ok) throw new Error(file.name + ": " + (data.detail || "could not upload"));
            return data.id;
          });
        })
        .then(function (id) {
          upload.value = "";
          useImage(id);
        })
        .catch(function (error) { status.textContent = error.message; });
    });
    imageSelect.addEventListener("change", function () { useImage(imageSelect.value); });
    kind.addEventListener("change", changed);
    controlnet.addEventListener("change", function () {
      // A ControlNet named for its map (…canny…, …scribble…) picks that pre-processor.
      var name = controlnet.value.toLowerCase();
      if (name.indexOf("scribble") !== -1) kind.value = "scribble";
      else if (name.indexOf("canny") !== -1) kind.value = "canny";
      changed();
    });
    weight.addEventListener("input", function () {
      weightShown.textContent = weight.value;
      if (imageId) status.textContent = "The painting follows this map at weight " + weight.value + ".";
      write();
    });
    [start, end].forEach(function (input) { input.addEventListener("change", write); });
    ["width", "height"].forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (input) input.addEventListener("change", showPreview);
    });
    clear.addEventListener("click", function () {
      useImage(null);
      status.textContent = "No guide: the painting follows the prompt alone.";
    });

    function offer(controlnets) {
      var keep = controlnet.value || (readField() || {}).model;
      controlnet.replaceChildren();
      controlnets.forEach(function (item) {
        var option = document.createElement("option");
        option.value = item.name;
        option.textContent = item.name + (item.family ? " (" + item.family + ")" : "");
        controlnet.append(option);
      });
      if (keep) choose(controlnet, keep);
      var usable = controlnets.length > 0;
      root.hidden = !usable;
      value.disabled = !usable;
      write();
    }

    function refresh() {
      if (!modelSelect || !modelSelect.value) return offer([]);
      var url = root.dataset.controlnetsUrl + "?model=" + encodeURIComponent(modelSelect.value);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : []; })
        .then(offer)
        .catch(function () { offer([]); });
    }

    // A refined painting's guide comes back as it was.
    var carried = readField();
    if (carried) {
      imageId = parseInt(carried.image_id, 10) || null;
      choose(imageSelect, imageId || "");
      choose(kind, carried.kind);
      if (carried.weight !== undefined) weight.value = String(carried.weight);
      weightShown.textContent = weight.value;
      if (carried.start !== undefined) start.value = String(carried.start);
      if (carried.end !== undefined) end.value = String(carried.end);
      showPreview();
    }
    if (modelSelect) modelSelect.addEventListener("change", refresh);
    refresh();
  }

  function init() {
    var root = document.querySelector("#studio-form [data-control-picker]");
    if (root) setUp(root);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
