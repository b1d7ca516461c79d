// Trends: choosing a metric or an image redraws at once (the form is a plain GET otherwise).
"use strict";

(function () {
  document.querySelectorAll("form.controls select").forEach(function (select) {
    select.addEventListener("change", function () {
      select.form.submit();
    });
  });
})();
