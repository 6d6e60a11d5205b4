/* The studio form adapts to the chosen model: what its family can do, from GET /api/models.
 *
 * For the model in #studio-form's select[data-models-url]: the size fields step by the model's
 * size step and show its default size; the negative prompt hides where the family ignores it;
 * the guidance field takes the family's range (and hides where the model has no guidance); the
 * scheduler hides for families that run their own; style methods the model lacks are disabled,
 * and the style reference hides where it has none. Hidden fields are disabled too, so they are
 * not sent. Without the list (an old server, a failed fetch) the form stays as it was rendered.
 */
(function () {
  "use strict";

  function field(input) {
    return input ? input.closest(".field") || input.parentElement : null;
  }

  function show(input, visible) {
    var box = field(input);
    if (!box) return;
    box.hidden = !visible;
    input.disabled = !visible;
  }

  function apply(form, model) {
    var can = model.capabilities || {};
    ["width", "height"].forEach(function (side) {
      var input = form.querySelector("#" + side);
      if (!input) return;
      input.step = String(model.size_step || 8);
      input.placeholder = "auto (" + model[side] + ")";
    });
    show(form.querySelector("#negative_prompt"), can.negative_prompt !== false);
    var guidance = form.querySelector("#guidance");
    if (guidance) {
      show(guidance, can.guidance !== "none");
      if (can.guidance_min !== undefined) guidance.min = String(can.guidance_min);
      if (can.guidance_max !== undefined) guidance.max = String(can.guidance_max);
      // The previous model's default (or a value out of this range) becomes this model's default.
      var value = parseFloat(guidance.value);
      var previous = parseFloat(form.dataset.guidanceDefault);
      var outside = value < can.guidance_min || value > can.guidance_max;
      if (can.guidance_default !== undefined && (isNaN(value) || value === previous || outside)) {
        guidance.value = String(can.guidance_default);
      }
      form.dataset.guidanceDefault = String(can.guidance_default);
      guidance.title = can.guidance === "distilled"
        ? "Distilled guidance: the model was trained to follow this value, no second pass"
        : "How closely the painting follows the prompt";
    }
    show(form.querySelector("#scheduler"), can.schedulers !== false);
    var methods = can.style_methods || [];
    var select = form.querySelector("#style_method");
    if (select) {
      Array.prototype.forEach.call(select.options, function (option) {
        var allowed = methods.indexOf(option.value) !== -1;
        option.disabled = !allowed;
        option.hidden = !allowed;
      });
      if (methods.length && methods.indexOf(select.value) === -1) select.value = methods[0];
    }
    var style = form.querySelector("[data-style-refs]");
    if (style) style.hidden = methods.length === 0;
    var regions = form.querySelector("[data-region-editor]");
    if (regions) {
      // Regional prompts mask a UNet's cross-attention: the editor hides where the model has none.
      regions.hidden = !can.regional_prompts;
      var value = regions.querySelector("[data-role=regions-value]");
      if (value) value.disabled = !can.regional_prompts;
    }
    form.dataset.family = model.family || "";
    form.dispatchEvent(new CustomEvent("studio:model-applied"));
  }

  function init() {
    var select = document.querySelector("#studio-form select[data-models-url]");
    if (!select) return;
    var form = select.form;
    fetch(select.dataset.modelsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (models) {
        var byName = {};
        models.forEach(function (model) { byName[model.name] = model; });
        function update() {
          if (byName[select.value]) apply(form, byName[select.value]);
        }
        select.addEventListener("change", update);
        update();
      })
      .catch(function () { /* the form as rendered still works */ });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
