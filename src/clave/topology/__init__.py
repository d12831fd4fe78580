"""Orchestration: how clave's processes are laid out and routed to.

A topology's processes are **components**: the monolith (every domain it still serves) and, once
split, one component per domain. The routing table (`table.py`) says which component answers
which paths; haproxy's config (`haproxy.py`) and the ALB's listener rules (`alb.py`) are
rendered from it; `up.py` runs a whole topology on one machine (`clave up`), and `routes.py`
carries out `clave routes`. Nothing here is imported by `clave.platform` or by a domain.
"""
