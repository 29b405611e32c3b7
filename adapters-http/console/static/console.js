// tocsin console: small progressive enhancements; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // "Format JSON" on the definition editor: pretty-prints, or says where the JSON is broken.
  var button = document.getElementById("format-json");
  if (button) {
    button.addEventListener("click", function () {
      var area = document.getElementById(button.getAttribute("data-target"));
      var status = document.getElementById("json-status");
      if (!area) return;
      try {
        area.value = JSON.stringify(JSON.parse(area.value), null, 2);
        if (status) status.textContent = "Valid JSON.";
      } catch (e) {
        if (status) status.textContent = "Not valid JSON: " + e.message;
      }
    });
  }
});
