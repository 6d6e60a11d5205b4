/* Mask editor: paint the part of an image to repaint, extend its canvas, and send an inpaint job.
 *
 * The mask canvas has the image's own size; strokes are drawn on it with Pointer Events (mouse,
 * pen and touch alike) in image pixels, whatever size the canvas is shown at. Outpainting adds
 * borders (multiples of 8) around the image: the stage grows and shows them checkered.
 *
 * On submit the mask is exported as a black-and-white PNG (white = repaint), uploaded to
 * POST /api/uploads, and POST /api/generate/inpaint is called with image_id, mask_id and the
 * outpaint sides; then the browser goes to the new generation's page, which shows its progress.
 */
(function () {
  "use strict";

  var UNDO_LIMIT = 30;
  var STROKE_COLOUR = "rgb(232, 162, 74)";
  var SIDES = ["top", "right", "bottom", "left"];
  var MAX_DISPLAY_HEIGHT = 0.7; // of the window's height

  function csrfToken(root) {
    if (root.dataset.csrfToken) return root.dataset.csrfToken;
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") || "" : "";
  }

  function readError(response) {
    return response.json().then(
      function (data) { return data && data.detail ? String(data.detail) : "the studio refused the request"; },
      function () { return "the studio answered " + response.status; }
    );
  }

  function setup(root) {
    var canvas = root.querySelector("[data-role=mask]");
    var stage = root.querySelector("[data-role=stage]");
    var frame = root.querySelector("[data-role=frame]");
    var form = root.querySelector("[data-role=form]");
    var errors = root.querySelector("[data-role=errors]");
    var status = root.querySelector("[data-role=mask-status]");
    var sizeInput = root.querySelector("[data-role=brush-size]");
    var sizeValue = root.querySelector("[data-role=brush-size-value]");
    var undoButton = root.querySelector("[data-action=undo]");
    var submit = root.querySelector("[data-role=submit]");
    var canvasSize = root.querySelector("[data-role=canvas-size]");
    var context = canvas.getContext("2d");
    var width = canvas.width;
    var height = canvas.height;
    var tool = "brush";
    var undo = [];
    var stroke = null; // {id, x, y} while a pointer paints

    // -- the stage: image size plus outpaint borders, scaled to fit ----------------------------

    function sides() {
      var values = {};
      SIDES.forEach(function (side) {
        var input = form.elements.namedItem("outpaint_" + side);
        var value = Math.max(0, Math.round((parseInt(input.value, 10) || 0) / 8) * 8);
        values[side] = Math.min(value, parseInt(input.max, 10) || value);
      });
      return values;
    }

    function layout() {
      var extra = sides();
      var totalWidth = width + extra.left + extra.right;
      var totalHeight = height + extra.top + extra.bottom;
      var available = stage.parentElement.clientWidth || totalWidth;
      var scale = Math.min(available / totalWidth, (window.innerHeight * MAX_DISPLAY_HEIGHT) / totalHeight);
      if (!isFinite(scale) || scale <= 0) scale = 1;
      // CSSOM writes, not style attributes: the page's CSP forbids inline styles in markup only.
      stage.style.width = totalWidth * scale + "px";
      stage.style.height = totalHeight * scale + "px";
      frame.style.left = extra.left * scale + "px";
      frame.style.top = extra.top * scale + "px";
      frame.style.width = width * scale + "px";
      frame.style.height = height * scale + "px";
      stage.classList.toggle("is-extended", totalWidth !== width || totalHeight !== height);
      if (canvasSize) {
        canvasSize.textContent = "Canvas " + totalWidth + "×" + totalHeight +
          (totalWidth !== width || totalHeight !== height ? " (image " + width + "×" + height + ")" : "");
      }
    }

    // -- painting ----------------------------------------------------------------------------

    function brushSize() {
      return Math.max(1, parseInt(sizeInput.value, 10) || 1);
    }

    function point(event) {
      var box = canvas.getBoundingClientRect();
      return {
        x: ((event.clientX - box.left) * width) / (box.width || width),
        y: ((event.clientY - box.top) * height) / (box.height || height),
      };
    }

    function paintedPixels() {
      var data = context.getImageData(0, 0, width, height).data;
      var count = 0;
      for (var i = 3; i < data.length; i += 4) if (data[i] >= 128) count++;
      return count;
    }

    function refreshStatus() {
      var count = paintedPixels();
      var share = Math.round((100 * count) / (width * height));
      status.textContent = count === 0 ? "Nothing painted yet." : "Repainting " + (share || "<1") + "% of the image.";
      root.dataset.painted = count > 0 ? "true" : "false";
      undoButton.disabled = undo.length === 0;
    }

    function remember() {
      undo.push(context.getImageData(0, 0, width, height));
      if (undo.length > UNDO_LIMIT) undo.shift();
      undoButton.disabled = false;
    }

    function prepare() {
      context.globalCompositeOperation = tool === "eraser" ? "destination-out" : "source-over";
      context.strokeStyle = STROKE_COLOUR;
      context.fillStyle = STROKE_COLOUR;
      context.lineWidth = brushSize();
      context.lineCap = "round";
      context.lineJoin = "round";
    }

    function dot(at) {
      prepare();
      context.beginPath();
      context.arc(at.x, at.y, brushSize() / 2, 0, Math.PI * 2);
      context.fill();
    }

    function line(from, to) {
      prepare();
      context.beginPath();
      context.moveTo(from.x, from.y);
      context.lineTo(to.x, to.y);
      context.stroke();
    }

    canvas.addEventListener("pointerdown", function (event) {
      if (stroke || (event.pointerType === "mouse" && event.button !== 0)) return;
      event.preventDefault();
      canvas.setPointerCapture(event.pointerId);
      remember();
      var at = point(event);
      stroke = { id: event.pointerId, last: at };
      dot(at);
    });

    canvas.addEventListener("pointermove", function (event) {
      if (!stroke || event.pointerId !== stroke.id) return;
      event.preventDefault();
      var events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
      if (!events.length) events = [event];
      events.forEach(function (each) {
        var at = point(each);
        line(stroke.last, at);
        stroke.last = at;
      });
    });

    function finish(event) {
      if (!stroke || event.pointerId !== stroke.id) return;
      stroke = null;
      if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
      refreshStatus();
    }
    canvas.addEventListener("pointerup", finish);
    canvas.addEventListener("pointercancel", finish);

    // -- tools and actions -------------------------------------------------------------------

    root.querySelectorAll("[data-tool]").forEach(function (button) {
      button.addEventListener("click", function () {
        tool = button.dataset.tool;
        root.querySelectorAll("[data-tool]").forEach(function (other) {
          var active = other === button;
          other.classList.toggle("is-active", active);
          other.setAttribute("aria-pressed", active ? "true" : "false");
        });
        canvas.classList.toggle("is-erasing", tool === "eraser");
      });
    });

    sizeInput.addEventListener("input", function () { sizeValue.textContent = sizeInput.value; });

    function undoLast() {
      if (!undo.length) return;
      context.putImageData(undo.pop(), 0, 0);
      refreshStatus();
    }

    function clear() {
      remember();
      context.clearRect(0, 0, width, height);
      refreshStatus();
    }

    function invert() {
      remember();
      var image = context.getImageData(0, 0, width, height);
      var data = image.data;
      for (var i = 0; i < data.length; i += 4) {
        data[i] = 232;
        data[i + 1] = 162;
        data[i + 2] = 74;
        data[i + 3] = 255 - data[i + 3];
      }
      context.putImageData(image, 0, 0);
      refreshStatus();
    }

    root.querySelector("[data-action=undo]").addEventListener("click", undoLast);
    root.querySelector("[data-action=clear]").addEventListener("click", clear);
    root.querySelector("[data-action=invert]").addEventListener("click", invert);
    document.addEventListener("keydown", function (event) {
      var typing = event.target && /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
      if (!typing && (event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
        event.preventDefault();
        undoLast();
      }
    });

    // -- live values and outpaint borders ----------------------------------------------------

    [["strength", "strength-value"], ["mask_blur", "blur-value"]].forEach(function (pair) {
      var input = form.elements.namedItem(pair[0]);
      var output = root.querySelector("[data-role=" + pair[1] + "]");
      input.addEventListener("input", function () { output.textContent = input.value; });
    });

    SIDES.forEach(function (side) {
      var input = form.elements.namedItem("outpaint_" + side);
      input.addEventListener("input", layout);
      input.addEventListener("change", function () {
        input.value = String(sides()[side]); // snap to a multiple of 8 within bounds
        layout();
      });
    });
    window.addEventListener("resize", layout);
    layout();
    refreshStatus();

    // -- submitting --------------------------------------------------------------------------

    function showError(message) {
      errors.textContent = "";
      if (!message) return;
      var box = document.createElement("div");
      box.className = "alert alert-error";
      box.setAttribute("role", "alert");
      box.textContent = message;
      errors.appendChild(box);
    }

    function maskBlob() {
      var out = document.createElement("canvas");
      out.width = width;
      out.height = height;
      var outContext = out.getContext("2d");
      var source = context.getImageData(0, 0, width, height).data;
      var image = outContext.createImageData(width, height);
      for (var i = 0; i < source.length; i += 4) {
        var value = source[i + 3] >= 128 ? 255 : 0;
        image.data[i] = image.data[i + 1] = image.data[i + 2] = value;
        image.data[i + 3] = 255;
      }
      outContext.putImageData(image, 0, 0);
      return new Promise(function (resolve, reject) {
        out.toBlob(function (blob) { blob ? resolve(blob) : reject(new Error("the mask could not be exported")); }, "image/png");
      });
    }

    function uploadMask(token) {
      return maskBlob().then(function (blob) {
        var body = new FormData();
        body.append("file", blob, "mask.png");
        return fetch("/api/uploads", {
          method: "POST",
          body: body,
          credentials: "same-origin",
          headers: { "X-CSRF-Token": token },
        });
      }).then(function (response) {
        if (!response.ok) return readError(response).then(function (message) { throw new Error("mask upload: " + message); });
        return response.json();
      }).then(function (data) { return data.id; });
    }

    function number(name) {
      var value = form.elements.namedItem(name).value.trim();
      return value === "" ? null : Number(value);
    }

    function request(maskId) {
      var extra = sides();
      var body = {
        prompt: form.elements.namedItem("prompt").value.trim(),
        negative_prompt: form.elements.namedItem("negative_prompt").value.trim(),
        image_id: Number(root.dataset.imageId),
        strength: number("strength"),
        mask_blur: number("mask_blur"),
        steps: number("steps"),
        guidance: number("guidance"),
      };
      var model = form.elements.namedItem("model").value;
      if (model) body.model = model;
      var seed = number("seed");
      if (seed !== null) body.seed = seed;
      if (maskId !== null) body.mask_id = maskId;
      if (extra.top || extra.right || extra.bottom || extra.left) body.outpaint = extra;
      if (root.dataset.sourceId) body.parent_id = Number(root.dataset.sourceId);
      return body;
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      showError("");
      var extra = sides();
      var extends_ = extra.top || extra.right || extra.bottom || extra.left;
      var painted = paintedPixels() > 0;
      if (!form.elements.namedItem("prompt").value.trim()) {
        showError("Write a prompt: describe what to paint in the masked part.");
        return;
      }
      if (!painted && !extends_) {
        showError("Paint over the part to repaint, or extend at least one side to outpaint.");
        return;
      }
      var token = csrfToken(root);
      submit.disabled = true;
      submit.classList.add("is-busy");
      (painted ? uploadMask(token) : Promise.resolve(null))
        .then(function (maskId) {
          return fetch("/api/generate/inpaint", {
            method: "POST",
            credentials: "same-origin",
            headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
            body: JSON.stringify(request(maskId)),
          });
        })
        .then(function (response) {
          if (!response.ok) return readError(response).then(function (message) { throw new Error(message); });
          return response.json();
        })
        .then(function (accepted) {
          status.textContent = "Sent as #" + accepted.id + (accepted.notes && accepted.notes.length ? ": " + accepted.notes.join("; ") : "") + ".";
          window.location.assign("/generations/" + accepted.id);
        })
        .catch(function (error) {
          showError(error.message);
          submit.disabled = false;
          submit.classList.remove("is-busy");
        });
    });
  }

  function start() {
    document.querySelectorAll("[data-mask-editor]").forEach(setup);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
