"""Tools around the server, not part of it: they drive it from outside like a user would
(the graph-quality harness behind `besmart graph quality`). Nothing in `server` imports them."""
