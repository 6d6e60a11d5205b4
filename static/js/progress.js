/* Live progress of job cards: follows each running card's event stream, then shows the finished card.
 *
 * A card (.job) that is not finished carries data-events-url (server-sent events: `progress`
 * {step, total, preview?} and `status` {status}) and data-card-url (the card fragment). On a final
 * status the stream is closed and the card is fetched again, which brings the images.
 */
(function () {
  "use strict";

  var FINAL = ["succeeded", "failed", "cancelled"];
  var streams = new WeakMap();

  function refreshCard(card) {
    if (!card.isConnected) return;
    var url = card.dataset.cardUrl;
    if (window.htmx) {
      window.htmx.ajax("GET", url, { target: card, swap: "outerHTML" });
      return;
    }
    fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) { if (html && card.isConnected) card.outerHTML = html; });
  }

  function setStatus(card, status) {
    var badge = card.querySelector("[data-role=status]");
    if (badge && badge.textContent !== status) {
      badge.textContent = status;
      badge.className = "badge badge-" + status;
    }
    card.classList.remove("job-queued", "job-running");
    card.classList.add("job-" + status);
  }

  function watch(card) {
    var url = card.dataset.eventsUrl;
    if (!url || streams.has(card)) return;
    var bar = card.querySelector("progress");
    var step = card.querySelector("[data-role=step]");
    var preview = card.querySelector("img.job-preview");
    var placeholder = card.querySelector("[data-role=placeholder-text]");
    var source = new EventSource(url);
    var finished = false;
    streams.set(card, source);

    source.addEventListener("progress", function (event) {
      var data = JSON.parse(event.data);
      setStatus(card, "running");
      if (bar) {
        bar.max = data.total;
        bar.value = data.step;
      }
      if (step) step.textContent = "Step " + data.step + " of " + data.total;
      if (placeholder) placeholder.textContent = "Painting: step " + data.step + " of " + data.total;
      if (data.preview && preview) {
        preview.src = data.preview;
        preview.hidden = false;
        card.classList.add("has-preview");
      }
    });

    source.addEventListener("status", function (event) {
      var status = JSON.parse(event.data).status;
      setStatus(card, status);
      if (status === "running" && step && bar && bar.value === 0) {
        step.textContent = "Painting: step 0 of " + bar.max;
        if (placeholder) placeholder.textContent = "Painting: step 0 of " + bar.max;
      }
      if (FINAL.indexOf(status) !== -1) {
        finished = true;
        source.close();
        refreshCard(card);
      }
    });

    source.addEventListener("error", function () {
      // After a network drop the browser reconnects by itself (with Last-Event-ID). If it gave
      // up instead, ask for the card once so it does not stay stuck on a stale bar.
      if (!finished && source.readyState === EventSource.CLOSED) refreshCard(card);
    });
  }

  function scan(root) {
    if (!root || !root.querySelectorAll) return;
    if (root.matches && root.matches(".job[data-events-url]")) watch(root);
    root.querySelectorAll(".job[data-events-url]").forEach(watch);
  }

  // A card replaced by htmx (cancelled, or refreshed) must not keep its stream open.
  document.addEventListener("htmx:beforeCleanupElement", function (event) {
    var source = streams.get(event.detail.elt);
    if (source) source.close();
  });
  document.addEventListener("htmx:load", function (event) { scan(event.detail.elt); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { scan(document); });
  } else {
    scan(document);
  }
})();
