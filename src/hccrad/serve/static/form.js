// The form: once submitted, the button is disabled (no second prediction by a double click) until the page is left.
(function () {
  const form = document.getElementById("patient-form");
  const button = document.getElementById("submit");
  const note = document.getElementById("submit-note");
  if (!form || !button) { return; }
  form.addEventListener("submit", function () {
    button.disabled = true;
    button.textContent = "Predicting\u2026";
    if (note) { note.hidden = false; }
  });
  // Coming back with the browser's back button shows the form enabled again.
  window.addEventListener("pageshow", function () { button.disabled = false; button.textContent = "Predict"; });
})();
