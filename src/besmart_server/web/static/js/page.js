// Offers the browser's own time zone in the time control (its IANA name is only known here).
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
for (const opt of document.querySelectorAll(".tz-select .tz-browser")) {
  const select = opt.parentElement;
  if (!zone || [...select.options].some((o) => o.value === zone)) {
    opt.remove();
    continue;
  }
  opt.value = zone;
  opt.textContent = `${zone} (your browser)`;
  opt.hidden = false;
}
