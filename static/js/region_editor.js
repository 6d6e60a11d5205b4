/* The studio form's region editor: a prompt per box of the canvas (regional prompts).
 *
 * The form's hidden #regions field stays the truth (it is what is sent: JSON, [{prompt, box, weight}]
 * with the box as fractions x0, y0, x1, y1): the editor reads it into boxes over a frame shaped like
 * the canvas and one row per region (prompt, weight, place, remove), and writes it back on every change.
 * Boxes are drawn by dragging on the frame with Pointer Events (mouse, pen and touch alike); from the
 * keyboard, "Add region" and each row's place (left half, right half, ...) do the same. A region with a
 * mask (sent through the API) is kept and listed, its mask named. model_form.js hides the editor where
 * the model takes no regional prompts.
 */
(function () {
  "use strict";

  var MAX_REGIONS = 4;
  var FRAME = 240; // px, the frame's longer side
  var MIN_SIDE = 0.03; // a drag shorter than this (a fraction of the frame) is a click, not a box
  var PLACES = {
    "left": [0, 0, 0.5, 1],
    "right": [0.5, 0, 1, 1],
    "top": [0, 0, 1, 0.5],
    "bottom": [0, 0.5, 1, 1],
    "centre": [0.25, 0.25, 0.75, 0.75],
    "whole": [0, 0, 1, 1],
  };
  var PLACE_NAMES = {
    "drawn": "Drawn box",
    "left": "Left half",
    "right": "Right half",
    "top": "Top half",
    "bottom": "Bottom half",
    "centre": "Centre",
    "whole": "Whole canvas",
  };

  function round(value) {
    return Math.round(Math.min(1, Math.max(0, value)) * 1000) / 1000;
  }

  function placeOf(box) {
    var found = "drawn";
    Object.keys(PLACES).forEach(function (name) {
      if (PLACES[name].every(function (side, index) { return side === box[index]; })) found = name;
    });
    return found;
  }

  function read(input) {
    try {
      var items = JSON.parse(input.value || "[]");
      return Array.isArray(items) ? items.filter(function (item) { return item && typeof item === "object"; }) : [];
    } catch (error) {
      return [];
    }
  }

  function setUp(root) {
    var form = root.closest("form");
    var input = root.querySelector("[data-role=regions-value]");
    var stage = root.querySelector("[data-role=stage]");
    var list = root.querySelector("[data-role=list]");
    var add = root.querySelector("[data-action=add-region]");
    var status = root.querySelector("[data-role=status]");
    var regions = read(input);
    var drag = null; // {id, x, y, element} while a pointer draws

    function write() {
      input.value = regions.length ? JSON.stringify(regions) : "";
    }

    function say(text) {
      status.textContent = text;
    }

    // -- the frame: shaped like the canvas the form will paint ---------------------------------

    function side(name) {
      var field = form.elements.namedItem(name);
      if (!field) return 0;
      var typed = parseInt(field.value, 10);
      var auto = /\((\d+)\)/.exec(field.placeholder || "");
      return typed > 0 ? typed : auto ? parseInt(auto[1], 10) : 0;
    }

    function shape() {
      var width = side("width") || 1;
      var height = side("height") || width;
      // At most FRAME px on its longer side. CSSOM writes, not style attributes: the page's CSP
      // forbids inline styles in markup only.
      stage.style.width = Math.round(FRAME * Math.min(1, width / height)) + "px";
      stage.style.aspectRatio = width + " / " + height;
    }

    function point(event) {
      var frame = stage.getBoundingClientRect();
      return {
        x: round((event.clientX - frame.left) / (frame.width || 1)),
        y: round((event.clientY - frame.top) / (frame.height || 1)),
      };
    }

    function place(element, box) {
      element.style.left = box[0] * 100 + "%";
      element.style.top = box[1] * 100 + "%";
      element.style.width = (box[2] - box[0]) * 100 + "%";
      element.style.height = (box[3] - box[1]) * 100 + "%";
    }

    // -- drawing: a drag across the frame makes a box ------------------------------------------

    stage.addEventListener("pointerdown", function (event) {
      if (drag || (event.pointerType === "mouse" && event.button !== 0)) return;
      if (regions.length >= MAX_REGIONS) {
        say("A painting takes at most " + MAX_REGIONS + " regions; remove one to draw another.");
        return;
      }
      event.preventDefault();
      var start = point(event);
      var element = document.createElement("div");
      element.className = "region-box region-box-" + (regions.length % MAX_REGIONS) + " is-drawing";
      place(element, [start.x, start.y, start.x, start.y]);
      stage.append(element);
      drag = { id: event.pointerId, x: start.x, y: start.y, element: element, box: null };
      if (stage.setPointerCapture) stage.setPointerCapture(event.pointerId);
    });

    stage.addEventListener("pointermove", function (event) {
      if (!drag || event.pointerId !== drag.id) return;
      var now = point(event);
      drag.box = [Math.min(drag.x, now.x), Math.min(drag.y, now.y), Math.max(drag.x, now.x), Math.max(drag.y, now.y)];
      place(drag.element, drag.box);
    });

    function finish(event) {
      if (!drag || event.pointerId !== drag.id) return;
      var box = drag.box;
      drag.element.remove();
      drag = null;
      if (event.type === "pointerup" && box && box[2] - box[0] >= MIN_SIDE && box[3] - box[1] >= MIN_SIDE) {
        regions.push({ prompt: "", box: box, weight: 1 });
        changed(regions.length - 1);
      }
    }

    stage.addEventListener("pointerup", finish);
    stage.addEventListener("pointercancel", finish);

    add.addEventListener("click", function () {
      if (regions.length >= MAX_REGIONS) {
        say("A painting takes at most " + MAX_REGIONS + " regions.");
        return;
      }
      var used = regions.map(function (region) { return region.box ? placeOf(region.box) : ""; });
      var next = ["left", "right", "top", "bottom", "centre"].filter(function (name) { return used.indexOf(name) === -1; })[0];
      regions.push({ prompt: "", box: PLACES[next || "whole"].slice(), weight: 1 });
      changed(regions.length - 1);
    });

    // -- the rows: a prompt, a weight and a place per region -----------------------------------

    function labelled(id, text, control) {
      var wrap = document.createElement("div");
      wrap.className = "region-field";
      var label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = text;
      control.id = id;
      wrap.append(label, control);
      return wrap;
    }

    function row(region, index) {
      var number = index + 1;
      var item = document.createElement("li");
      item.className = "region-row region-row-" + (index % MAX_REGIONS);

      var prompt = document.createElement("input");
      prompt.type = "text";
      prompt.maxLength = 2000;
      prompt.required = true;
      prompt.placeholder = "what to paint here, e.g. a red boat";
      prompt.value = region.prompt || "";
      prompt.dataset.role = "region-prompt";
      prompt.addEventListener("input", function () {
        region.prompt = prompt.value;
        write();
      });

      var weight = document.createElement("input");
      weight.type = "number";
      weight.min = "0.05";
      weight.max = "4";
      weight.step = "0.05";
      weight.value = String(region.weight === undefined ? 1 : region.weight);
      weight.addEventListener("input", function () {
        var value = parseFloat(weight.value);
        region.weight = isNaN(value) ? 1 : value;
        write();
      });

      var where;
      if (region.box) {
        where = document.createElement("select");
        Object.keys(PLACE_NAMES).forEach(function (name) {
          var option = document.createElement("option");
          option.value = name;
          option.textContent = PLACE_NAMES[name];
          where.append(option);
        });
        where.value = placeOf(region.box);
        where.options[0].disabled = where.value !== "drawn";
        where.addEventListener("change", function () {
          if (PLACES[where.value]) region.box = PLACES[where.value].slice();
          changed(null);
        });
      } else {
        where = document.createElement("output");
        where.textContent = "Mask image #" + region.mask_id;
      }

      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button button-small button-ghost";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove region " + number);
      remove.addEventListener("click", function () {
        regions.splice(index, 1);
        changed(null);
        say("Region " + number + " removed.");
        (list.querySelector("[data-role=region-prompt]") || add).focus();
      });

      var head = document.createElement("div");
      head.className = "region-row-head";
      var name = document.createElement("span");
      name.className = "region-number";
      name.textContent = "Region " + number;
      head.append(name, remove);
      var promptField = labelled("region-prompt-" + index, "Prompt for region " + number, prompt);
      promptField.classList.add("region-field-prompt");
      item.append(
        head,
        promptField,
        labelled("region-weight-" + index, "Weight", weight),
        labelled("region-place-" + index, region.box ? "Place" : "Mask", where)
      );
      return item;
    }

    function render() {
      stage.querySelectorAll(".region-box").forEach(function (box) { box.remove(); });
      list.replaceChildren();
      regions.forEach(function (region, index) {
        if (region.box) {
          var box = document.createElement("div");
          box.className = "region-box region-box-" + (index % MAX_REGIONS);
          box.textContent = String(index + 1);
          box.setAttribute("aria-hidden", "true");
          place(box, region.box);
          stage.append(box);
        }
        list.append(row(region, index));
      });
      add.disabled = regions.length >= MAX_REGIONS;
      root.dataset.count = String(regions.length);
    }

    function changed(focusIndex) {
      write();
      render();
      if (focusIndex !== null) {
        var prompt = list.querySelectorAll("[data-role=region-prompt]")[focusIndex];
        if (prompt) prompt.focus();
        say("Region " + (focusIndex + 1) + " added: write what to paint in it.");
      }
    }

    // A PNG's parameters loaded into the form (reuse.js) replace the regions.
    input.addEventListener("change", function () {
      regions = read(input);
      render();
    });
    ["width", "height"].forEach(function (name) {
      var field = form.elements.namedItem(name);
      if (field) field.addEventListener("input", shape);
    });
    // model_form.js has set the chosen model's default size (the size fields' placeholders).
    form.addEventListener("studio:model-applied", shape);

    root.hidden = false;
    shape();
    render();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-region-editor]");
    if (root) setUp(root);
  });
})();
