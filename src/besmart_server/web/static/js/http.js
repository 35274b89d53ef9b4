// What every page module shares: JSON from the server's own API (the session cookie
// authenticates it) and HTML escaping.

export const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// A GET is tried twice when the network fails (fetch rejects: a keep-alive connection the
// server closed as the request left, a restarting host behind the load balancer); an HTTP
// error answer is the server's word and is never retried. The error names status and body.
export async function getJson(url) {
  let r;
  try {
    r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  } catch (err) {
    console.warn(`retrying ${url}: ${err.message}`);
    await new Promise((ok) => setTimeout(ok, 250));
    r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  }
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}
