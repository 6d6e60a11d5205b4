/* The studio form's LoRA picker: the LoRAs from GET /api/loras, each added with a weight slider.
 *
 * The form's #loras text field stays the truth (it is what is sent, "name:weight, ..."): the
 * picker reads it into one row per LoRA (name, a slider from -2 to 2, remove) and writes it back
 * on every change. Without the list (a failed fetch, no LoRAs installed) the text field alone remains.
 */
(function () {
  "use strict";

  function parse(text) {
    return text.split(",").map(function (part) {
      var item = part.trim().replace(/^<lora:/, "").replace(/>$/, "");
      if (!item) return null;
      var colon = item.lastIndexOf(":");
      var weight = colon > 0 ? parseFloat(item.slice(colon + 1)) : NaN;
      return isNaN(weight) ? { name: item, weight: 1 } : { name: item.slice(0, colon).trim(), weight: weight };
    }).filter(Boolean);
  }

  function write(input, items) {
    input.value = items.map(function (item) { return item.name + ":" + item.weight; }).join(", ");
  }

  function render(input, rows) {
    var items = parse(input.value);
    rows.replaceChildren();
    items.forEach(function (item, index) {
      var row = document.createElement("div");
      row.className = "lora-row";
      var id = "lora-weight-" + index;
      var label = document.createElement("label");
      label.htmlFor = id;
      label.textContent = item.name;
      var slider = document.createElement("input");
      slider.type = "range";
      slider.id = id;
      slider.min = "-2";
      slider.max = "2";
      slider.step = "0.05";
      slider.value = String(item.weight);
      var shown = document.createElement("output");
      shown.htmlFor = id;
      shown.textContent = String(item.weight);
      slider.addEventListener("input", function () {
        items[index].weight = parseFloat(slider.value);
        shown.textContent = slider.value;
        write(input, items);
      });
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button button-small button-ghost";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", "Remove LoRA " + item.name);
      remove.addEventListener("click", function () {
        items.splice(index, 1);
        write(input, items);
        render(input, rows);
      });
      row.append(label, slider, shown, remove);
      rows.append(row);
    });
  }

  function setUp(input) {
    fetch(input.dataset.lorasUrl, { headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (loras) {
        if (!loras.length) return;
        var picker = document.createElement("div");
        picker.className = "lora-picker";
        var choose = document.createElement("select");
        choose.setAttribute("aria-label", "LoRA to add");
        loras.forEach(function (lora) {
          var option = document.createElement("option");
          option.value = lora.name;
          option.textContent = lora.name + (lora.family ? " (" + lora.family + ")" : "");
          choose.append(option);
        });
        var add = document.createElement("button");
        add.type = "button";
        add.className = "button button-small";
        add.textContent = "Add LoRA";
        var rows = document.createElement("div");
        add.addEventListener("click", function () {
          var items = parse(input.value).filter(function (item) { return item.name !== choose.value; });
          items.push({ name: choose.value, weight: 1 });
          write(input, items);
          render(input, rows);
        });
        input.addEventListener("change", function () { render(input, rows); });
        picker.append(choose, add, rows);
        input.after(picker);
        render(input, rows);
      })
      .catch(function () { /* the text field alone still works */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var input = document.querySelector("#loras[data-loras-url]");
    if (input) setUp(input);
  });
})();
