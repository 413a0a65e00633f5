/* Mark each plot once loaded: data-natural-width is its width in pixels, 0 (and class "broken") when it failed.
   A file of its own, not an inline script: the pages' Content-Security-Policy allows scripts from this site only. */
window.addEventListener("load", function () {
  document.querySelectorAll("img.plot").forEach(function (img) {
    img.dataset.naturalWidth = img.naturalWidth;
    if (!img.naturalWidth) { img.classList.add("broken"); }
  });
});
