// The slice viewer: the slider and the mouse wheel (over the image) choose the axial slice shown.
(function () {
  const image = document.getElementById("slice");
  const slider = document.getElementById("slice-slider");
  const number = document.getElementById("slice-number");
  if (!image || !slider) { return; }
  function show(index) {
    const last = Number(slider.max);
    index = Math.max(0, Math.min(last, index));
    slider.value = String(index);
    number.textContent = String(index + 1);
    image.src = image.dataset.base + index + ".png";
  }
  slider.addEventListener("input", function () { show(Number(slider.value)); });
  image.addEventListener("wheel", function (event) {
    event.preventDefault();
    show(Number(slider.value) + (event.deltaY > 0 ? 1 : -1));
  }, { passive: false });
})();
