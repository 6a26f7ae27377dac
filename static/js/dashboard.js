// Copy buttons: <button data-copy-from="input-id"> copies that input's value. A delegated listener on the
// document, so buttons swapped in by htmx work too, with no inline onclick (the Content-Security-Policy forbids them).
document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-from]");
  if (!button) return;
  var source = document.getElementById(button.dataset.copyFrom);
  if (!source) return;
  navigator.clipboard.writeText(source.value);
  button.textContent = "Copied";
});
