"""The operator page's HTML: plain functions of what `mesh.ops.page_state` read.

Every value goes in through `Markup.format` (markupsafe, Werkzeug's own escaper),
which escapes whatever is not already Markup: a queue, an error message or a
request id holding markup is shown as text. Class names come only from fixed
sets, never from a value. No inline script or style: the page's
Content-Security-Policy allows only /ops/page.js and /ops/page.css.
"""
import datetime as dt
from urllib.parse import urlencode

from markupsafe import Markup

from mesh.ops.status import shown
from mesh.ops.trace import KINDS

__all__ = ["page", "login", "PREFIX"]

PREFIX = "/ops"
CIRCUIT_STATES = ("closed", "half-open", "open")
REQUESTS_SHOWN = 5  # request ids linked from one dead-letter group


def _shown(value, unit=""):
    return shown(value, unit, none="–")


def _join(pieces):
    return Markup("").join(pieces)


def _trace_link(**query):
    return Markup('<a href="{}?{}">{}</a>').format(PREFIX, urlencode(query),
                                                   next(iter(query.values())))


def _document(title, body, header=Markup("")):
    return Markup(
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<title>{title}</title>'
        '<link rel="stylesheet" href="{prefix}/page.css">'
        '<script src="{prefix}/page.js" defer></script></head>'
        '<body>{header}{body}</body></html>\n').format(title=title, prefix=PREFIX,
                                                       header=header, body=body)


def _table(cls, headings, rows, empty):
    if not rows:
        return Markup('<p class="empty">{}</p>').format(empty)
    head = _join(Markup("<th>{}</th>").format(h) for h in headings)
    body = _join(Markup("<tr>{}</tr>").format(_join(row)) for row in rows)
    return Markup('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody>'
                  '</table>').format(cls, head, body)


def _cell(value, unit="", cls=None):
    if cls:
        return Markup('<td class="{}">{}</td>').format(cls, _shown(value, unit))
    return Markup("<td>{}</td>").format(_shown(value, unit))


def _failed(part):
    return Markup('<p class="error">{}</p>').format(part.error)


def _section(id_, title, part, render):
    inner = _failed(part) if part.error is not None else render(part.value)
    return Markup('<section id="{}"><h2>{}</h2>{}</section>').format(id_, title, inner)


def _services(state):
    rows = []
    for name, report in state["services"].items():
        outbox = report.get("outbox") or {}
        queues, dead = report.get("queues") or {}, report.get("dead_letters") or {}
        rows.append([
            Markup('<th scope="row">{}</th>').format(name),
            _cell("yes" if report.get("ready") else "no",
                  cls="ok" if report.get("ready") else "bad"),
            _cell(report.get("instances")),
            _cell(sum(queues.values()) if queues else None),
            _cell(outbox.get("backlog")),
            _cell(outbox.get("oldest_age_seconds"), " s"),
            _cell(sum(n or 0 for n in dead.values()) if dead else None),
            Markup("<td>{}</td>").format("; ".join(report.get("problems") or ())),
        ])
    broker_ok = state.get("broker") == "ok"
    return Markup('<p class="{}">Broker: {}</p>{}').format(
        "ok" if broker_ok else "bad", state.get("broker"),
        _table("services", ("Service", "Ready", "Instances", "Queued", "Outbox backlog",
                            "Oldest outbox event", "Dead letters", "Problems"),
               rows, "No service is configured."))


def _queues(state):
    rows = []
    for name, report in state["services"].items():
        dead = report.get("dead_letters") or {}
        for queue, waiting in sorted((report.get("queues") or {}).items()):
            rows.append([_cell(name), _cell(queue), _cell(waiting),
                         _cell(dead.get(queue))])
        for queue in sorted(set(dead) - set(report.get("queues") or {})):
            rows.append([_cell(name), _cell(queue), _cell(None), _cell(dead[queue])])
    return _table("queues", ("Service", "Queue", "Waiting", "Dead letters"), rows,
                  "No queue could be read.")


def _circuits(circuits):
    rows = []
    for target, circuit in circuits.items():
        state = circuit["state"]
        rows.append([
            Markup('<th scope="row">{}</th>').format(target),
            _cell(state, cls=f"circuit-{state}" if state in CIRCUIT_STATES else None),
            _cell("broker unreachable" if circuit["broker_down"] else
                  {True: "yes", False: "no", None: "not looked yet"}[circuit["present"]]),
            _cell(circuit["in_flight"]),
        ])
    return Markup("<p>The circuits of the gateway instance serving this page; "
                  "each instance keeps its own.</p>{}").format(
        _table("circuits", ("Service called", "Circuit", "Running instance",
                            "Calls in flight"), rows, "This gateway calls no service."))


def _dead_letters(groups):
    rows = []
    for group in groups:
        requests = group.get("request_ids") or []
        links = _join(Markup("{} ").format(_trace_link(trace=r))
                      for r in requests[:REQUESTS_SHOWN])
        if len(requests) > REQUESTS_SHOWN:
            links += Markup("and {} more").format(len(requests) - REQUESTS_SHOWN)
        rows.append([_cell(group["queue"]), _cell(group["error_type"]),
                     _cell(group["message"], cls="message"), _cell(group["count"]),
                     _cell(group["first_seen"]), _cell(group["last_seen"]),
                     Markup("<td>{}</td>").format(links or "–"),
                     _cell(group["fingerprint"], cls="fingerprint")])
    return Markup("<p>Replay or discard a group with <code>mesh dlq</code>.</p>{}").format(
        _table("dead-letters", ("Queue", "Error type", "Message", "Count", "First seen",
                                "Last seen", "Requests", "Group"),
               rows, "No dead letters."))


def _step(step):
    kind = step.get("kind")
    detail = step.get("detail")
    return Markup(
        '<li class="step {cls}"><time datetime="{at}">+{after:.3f} s</time> '
        '<span class="service">{service}</span> <span class="kind">{kind}</span> '
        '<span class="name">{name}</span> <span class="outcome">{outcome}</span>'
        '{detail}</li>').format(
        cls=f"kind-{kind}" if kind in KINDS else "kind-other", at=step.get("at"),
        after=float(step.get("after_seconds") or 0), service=step.get("service"),
        kind=kind, name=step.get("name"), outcome=step.get("outcome"),
        detail=Markup('<div class="detail">{}</div>').format(detail) if detail else "")


def _trace(story):
    steps = _join(_step(step) for step in story.get("steps") or ())
    # what the trace could not read: its story may lack steps
    notes = _join(Markup('<li>{}</li>').format(note) for note in story.get("notes") or ())
    return Markup('<p>Request <code class="request-id">{}</code>: {}</p>'
                  '<ol class="timeline">{}</ol>{}').format(
        story.get("request_id"), story.get("where"), steps or "",
        Markup('<ul class="notes">{}</ul>').format(notes) if notes else "")


def _search(query_text):
    request_id, order = query_text
    return Markup(
        '<form id="search" method="get" action="{prefix}">'
        '<label>Request id <input name="trace" value="{request_id}" size="36" '
        'autocomplete="off" spellcheck="false"></label> '
        '<label>or order <input name="order" value="{order}" size="8" '
        'inputmode="numeric" autocomplete="off"></label> '
        '<button type="submit">Show trace</button></form>').format(
        prefix=PREFIX, request_id=request_id or "", order=order or "")


def page(parts, query_text, caller, now=None):
    """The page: `parts` from `page_state.collect`, `query_text` the (request id,
    order) as typed, `caller` the admin's claims."""
    now = now or dt.datetime.now(dt.timezone.utc)
    header = Markup(
        '<header><h1>mesh operations</h1>{search}'
        '<label class="refresh"><input type="checkbox" id="auto-refresh"> '
        'refresh every 10 s</label>'
        '<form method="post" action="{prefix}/logout" class="logout">'
        '<span>admin #{user}</span> <button type="submit">Log out</button></form>'
        '</header>').format(search=_search(query_text), prefix=PREFIX,
                            user=caller.user_id)
    # the trace stays as it was read: the refresh (page.js) replaces #live only
    trace = _section("trace", "Trace", parts["trace"], _trace) if "trace" in parts else ""
    sections = [
        _section("services", "Services", parts["status"], _services),
        _section("queues", "Queue depths", parts["status"], _queues),
        _section("circuits", "Circuits", parts["circuits"], _circuits),
        _section("dead-letter-groups", "Dead-letter groups", parts["dead_letters"],
                 _dead_letters),
    ]
    body = Markup('{trace}<main id="live"><p class="read-at">Read at <time datetime="{at}">'
                  '{at}</time></p>{sections}</main>').format(
        trace=trace, at=now.isoformat(timespec="seconds"), sections=_join(sections))
    return str(_document("mesh operations", body, header))


def login(message=None):
    """The login form: an admin's bearer token, pasted."""
    notice = Markup('<p class="error" role="alert">{}</p>').format(message) \
        if message else ""
    body = Markup(
        '<main class="login"><h1>mesh operations</h1>'
        "<p>Log in with an admin's bearer token: <code>POST /api/v1/auth/token</code> "
        "on the public API gives one.</p>{notice}"
        '<form method="post" action="{prefix}/login">'
        '<label for="token">Bearer token</label>'
        '<textarea id="token" name="token" rows="4" cols="60" required '
        'autocomplete="off" spellcheck="false"></textarea>'
        '<button type="submit">Log in</button></form></main>').format(
        notice=notice, prefix=PREFIX)
    return str(_document("mesh operations: log in", body))
