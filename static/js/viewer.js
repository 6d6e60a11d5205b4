/* The image viewer: a painting opened in the page, fitted to the screen, zoomable, one of its batch.
 *
 * A link carrying data-view="URL" opens URL in the viewer instead of following its href (a
 * modified click, or no JavaScript, still opens the href). Its neighbours are the other [data-view]
 * links inside the closest [data-view-group] (a batch, a gallery), else on the page. The caption
 * is data-caption or the image's alt; the download link is data-download or the URL itself.
 *
 * Keys: Esc closes, ←/→ step through the group, + and − zoom, 0 fits. Touch: swipe sideways to
 * step (when fitted), double-tap to zoom, drag to pan a zoomed image (the stage scrolls).
 *
 * Paintings are small (studio-tiny paints 64 px), so every image shown larger than its natural
 * size is drawn pixelated (static/css/studio.css); one shown smaller gets .is-downscaled, which
 * draws it smoothly instead.
 */
(function () {
  "use strict";

  var ZOOMS = [1, 1.5, 2, 3, 4, 6, 8];
  var viewer = null;
  var items = [];
  var index = 0;
  var zoom = 1; // multiple of the fitted size
  var opener = null;

  function build() {
    var dialog = document.createElement("dialog");
    dialog.className = "viewer";
    dialog.setAttribute("aria-label", "Painting viewer");
    dialog.innerHTML =
      '<div class="viewer-bar">' +
      '<p class="viewer-caption" data-role="caption"></p>' +
      '<span class="viewer-count" data-role="count" aria-live="polite"></span>' +
      '<div class="viewer-tools">' +
      '<button type="button" class="button button-small button-ghost" data-act="out" aria-label="Zoom out">&minus;</button>' +
      '<button type="button" class="button button-small button-ghost" data-act="fit" aria-label="Fit to screen">Fit</button>' +
      '<button type="button" class="button button-small button-ghost" data-act="in" aria-label="Zoom in">+</button>' +
      '<a class="button button-small" data-role="download" download>Download</a>' +
      '<button type="button" class="button button-small button-ghost" data-act="close" aria-label="Close viewer">&times;</button>' +
      "</div></div>" +
      '<div class="viewer-stage" data-role="stage" tabindex="0" aria-label="The painting; arrow keys scroll it when zoomed"><img class="viewer-image" alt=""></div>' +
      '<button type="button" class="viewer-nav viewer-prev" data-act="prev" aria-label="Previous painting">&#8249;</button>' +
      '<button type="button" class="viewer-nav viewer-next" data-act="next" aria-label="Next painting">&#8250;</button>';
    document.body.appendChild(dialog);
    dialog.addEventListener("click", function (event) {
      var target = event.target instanceof Element ? event.target : null;
      var button = target && target.closest("[data-act]");
      if (button) act(button.getAttribute("data-act"));
      else if (target === dialog || target === stage()) close();
    });
    dialog.addEventListener("keydown", onKey);
    dialog.addEventListener("close", function () {
      if (opener && opener.isConnected) opener.focus();
    });
    var image = dialog.querySelector(".viewer-image");
    image.addEventListener("load", layout);
    watchTouch(dialog.querySelector("[data-role=stage]"));
    window.addEventListener("resize", function () { if (dialog.open) layout(); });
    return dialog;
  }

  function stage() { return viewer.querySelector("[data-role=stage]"); }
  function picture() { return viewer.querySelector(".viewer-image"); }

  function groupOf(link) {
    var root = link.closest("[data-view-group]") || document;
    return Array.prototype.slice.call(root.querySelectorAll("[data-view], [data-lightbox]"));
  }

  function urlOf(link) { return link.getAttribute("data-view") || link.getAttribute("data-lightbox"); }

  function captionOf(link) {
    var image = link.querySelector("img");
    return link.getAttribute("data-caption") || (image && image.alt) || "Painting";
  }

  function open(link) {
    if (typeof HTMLDialogElement === "undefined") return false;
    viewer = viewer || build();
    items = groupOf(link);
    index = Math.max(0, items.indexOf(link));
    opener = link;
    show();
    if (!viewer.open) viewer.showModal();
    viewer.querySelector("[data-act=close]").focus();
    return true;
  }

  function show() {
    var link = items[index];
    var url = urlOf(link);
    var image = picture();
    zoom = 1;
    image.alt = captionOf(link);
    image.src = url;
    viewer.querySelector("[data-role=caption]").textContent = captionOf(link);
    viewer.querySelector("[data-role=count]").textContent = items.length > 1 ? index + 1 + " / " + items.length : "";
    var download = viewer.querySelector("[data-role=download]");
    download.href = link.getAttribute("data-download") || url;
    var several = items.length > 1;
    viewer.querySelector("[data-act=prev]").hidden = !several;
    viewer.querySelector("[data-act=next]").hidden = !several;
    if (image.complete && image.naturalWidth) layout();
  }

  // Fit the image to the stage, times the zoom; the stage scrolls when it is larger.
  function layout() {
    var image = picture();
    var area = stage();
    if (!image.naturalWidth) return;
    var fit = Math.min(area.clientWidth / image.naturalWidth, area.clientHeight / image.naturalHeight);
    var width = Math.max(1, Math.floor(image.naturalWidth * fit * zoom));
    var height = Math.max(1, Math.floor(image.naturalHeight * fit * zoom));
    image.style.width = width + "px";
    image.style.height = height + "px";
    image.classList.toggle("is-downscaled", width < image.naturalWidth);
    area.classList.toggle("is-zoomed", zoom > 1);
  }

  function setZoom(next) {
    var area = stage();
    var centreX = (area.scrollLeft + area.clientWidth / 2) / Math.max(1, area.scrollWidth);
    var centreY = (area.scrollTop + area.clientHeight / 2) / Math.max(1, area.scrollHeight);
    zoom = next;
    layout();
    area.scrollLeft = centreX * area.scrollWidth - area.clientWidth / 2;
    area.scrollTop = centreY * area.scrollHeight - area.clientHeight / 2;
  }

  function zoomBy(direction) {
    var at = ZOOMS.indexOf(zoom);
    if (at === -1) at = 0;
    setZoom(ZOOMS[Math.min(ZOOMS.length - 1, Math.max(0, at + direction))]);
  }

  function step(by) {
    if (items.length < 2) return;
    index = (index + by + items.length) % items.length;
    show();
  }

  function close() { if (viewer && viewer.open) viewer.close(); }

  function act(name) {
    if (name === "close") close();
    else if (name === "prev") step(-1);
    else if (name === "next") step(1);
    else if (name === "in") zoomBy(1);
    else if (name === "out") zoomBy(-1);
    else if (name === "fit") setZoom(1);
  }

  function onKey(event) {
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    var keys = { ArrowLeft: "prev", ArrowRight: "next", "+": "in", "=": "in", "-": "out", "0": "fit" };
    var name = keys[event.key];
    if (!name) return;
    event.preventDefault();
    act(name);
  }

  function watchTouch(area) {
    var startX = 0;
    var startY = 0;
    var lastTap = 0;
    area.addEventListener("touchstart", function (event) {
      if (event.touches.length !== 1) return;
      startX = event.touches[0].clientX;
      startY = event.touches[0].clientY;
    }, { passive: true });
    area.addEventListener("touchend", function (event) {
      if (event.changedTouches.length !== 1) return;
      var dx = event.changedTouches[0].clientX - startX;
      var dy = event.changedTouches[0].clientY - startY;
      var now = Date.now();
      if (Math.abs(dx) < 10 && Math.abs(dy) < 10) {
        if (now - lastTap < 300) {
          setZoom(zoom > 1 ? 1 : 2);
          lastTap = 0;
          event.preventDefault();
        } else {
          lastTap = now;
        }
      } else if (zoom === 1 && Math.abs(dx) > 50 && Math.abs(dx) > 2 * Math.abs(dy)) {
        step(dx < 0 ? 1 : -1);
      }
    });
    area.addEventListener("wheel", function (event) {
      if (!event.ctrlKey) return; // a pinch on a touchpad, or Ctrl+wheel
      event.preventDefault();
      zoomBy(event.deltaY < 0 ? 1 : -1);
    }, { passive: false });
  }

  // An image drawn smaller than its natural size is smoothed instead of pixelated.
  function markScale(image) {
    if (!image.naturalWidth || image.classList.contains("viewer-image")) return;
    var shown = image.getBoundingClientRect().width * (window.devicePixelRatio || 1);
    image.classList.toggle("is-downscaled", shown > 0 && shown < image.naturalWidth);
  }

  document.addEventListener("load", function (event) {
    if (event.target instanceof HTMLImageElement) markScale(event.target);
  }, true);

  document.addEventListener("click", function (event) {
    var target = event.target instanceof Element ? event.target : null;
    var link = target && target.closest("[data-view], [data-lightbox]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    if (open(link)) event.preventDefault();
  });

  window.studioViewer = { open: open, close: close };
})();
