"""The operator page in a real headless browser (Debian's chromium, driven by
Selenium through /usr/bin/chromedriver), on a gateway and services running
against the real broker: who gets in, what it shows, and that a value holding
markup is shown as text."""
import datetime as dt
import json
import os
import uuid
from urllib.parse import urlencode

import pytest
import requests
from kombu import Connection, Exchange

from mesh.messaging.outbox import CORRELATION_HEADER
from mesh.ops import dlq
from mesh.ops.trace import trace
from mesh.testing import free_port, wait_until

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# shown by the page as text; an element it made would be found by `script[data-x]`
MARKUP = '<script data-x>alert("x&y")</script>'
# offline: without these chromium waits on lookups of Google's services
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")


@pytest.fixture
def browser(tmp_path):
    if not os.path.exists(CHROMIUM):
        # a skipped browser test would check nothing: the setup is what is broken
        pytest.fail(f"no {CHROMIUM}: `bash .ci/ensure-services` installs Debian's chromium "
                    "and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    # a chromedriver given: Selenium Manager downloads nothing
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def mesh(start_mesh):
    ops = free_port()
    client = start_mesh(OPS_PORTS={"gateway": ops})
    client.ops = f"http://127.0.0.1:{ops}"
    return client


def park_malformed_event(config, request_id):
    """An accounts event notifications cannot read, which it parks at once: its
    error names the event's type, which holds MARKUP."""
    envelope = {"event_id": str(uuid.uuid4()), "type": MARKUP, "version": 1,
                "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "correlation_id": request_id,
                "data": {"user_id": 1, "email": "a@example.com", "name": "A"}}
    exchange = Exchange("accounts.events", type="topic", durable=True)
    with Connection(config["AMQP_URI"]) as connection:
        connection.Producer().publish(
            json.dumps(envelope), exchange=exchange, routing_key="user_registered",
            content_type="application/json", content_encoding="utf-8",
            headers={CORRELATION_HEADER: request_id}, declare=[exchange])
    (queue,) = [q for q in dlq.handler_queues(config)
                if "notifications" in q and "user_registered" in q]
    wait_until(lambda: dlq.messages(config["AMQP_URI"], queue), timeout=20,
               what="the malformed event parked")
    return queue


def log_in(browser, mesh, token):
    from selenium.webdriver.common.by import By

    browser.get(mesh.ops + "/ops")  # no cookie yet: the login form
    assert browser.current_url == mesh.ops + "/ops/login"
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def test_an_admin_sees_the_mesh_and_a_requests_trace(browser, mesh):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    customer, admin = mesh.customer(), mesh.admin_token()
    product = mesh.product()
    request_id = f"ops-page-{uuid.uuid4().hex[:12]}"
    placed = mesh.order(customer, product["id"], headers={"X-Request-ID": request_id})
    assert placed.status_code == 202, placed.text
    mesh.settled(customer, placed.json()["id"])
    # the saga's last step (notifications taking the confirmation) may come after the
    # order reads confirmed: parked only then, the malformed event is the trace's last
    confirmed = ("notifications", "on_order_confirmed")  # inventory takes it too
    wait_until(lambda: confirmed in {(step["service"], step["name"])
                                     for step in trace(mesh.config, request_id)["steps"]},
               timeout=20, what="notifications to take the order's confirmation")
    queue = park_malformed_event(mesh.config, request_id)

    log_in(browser, mesh, admin)
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "live"))
    assert browser.current_url == mesh.ops + "/ops"
    services = browser.find_element(By.CSS_SELECTOR, "#services table")
    names = [th.text for th in services.find_elements(By.CSS_SELECTOR, "tbody th")]
    assert set(names) == set(mesh.config["SERVICES"])
    circuits = browser.find_element(By.CSS_SELECTOR, "#circuits table").text
    assert "accounts" in circuits and "closed" in circuits

    # the parked event's group, its message holding markup shown as text
    groups = browser.find_element(By.CSS_SELECTOR, "#dead-letter-groups table")
    (row,) = [r for r in groups.find_elements(By.CSS_SELECTOR, "tbody tr")
              if r.find_elements(By.CSS_SELECTOR, "td")[0].text == queue]
    assert MARKUP in row.find_element(By.CSS_SELECTOR, "td.message").text
    assert browser.find_elements(By.CSS_SELECTOR, "script[data-x]") == []

    # page.js runs under the page's CSP, and refreshes the page's state when asked
    read_at = browser.find_element(By.CSS_SELECTOR, "#live .read-at time")
    first = read_at.get_attribute("datetime")
    browser.find_element(By.ID, "auto-refresh").click()
    # the refresh may replace #live between finding the element and reading it
    WebDriverWait(browser, 25, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: b.find_element(By.CSS_SELECTOR, "#live .read-at time")
        .get_attribute("datetime") != first)
    assert browser.execute_script("return localStorage.getItem('mesh-ops-refresh')") == "on"
    browser.find_element(By.ID, "auto-refresh").click()
    assert not [entry for entry in browser.get_log("browser")
                if "Content Security Policy" in entry["message"]]

    # the search box: the request's trace as a timeline
    search = browser.find_element(By.NAME, "trace")
    search.send_keys(request_id)
    search.submit()
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, "trace"))
    assert browser.find_element(By.CSS_SELECTOR, "#trace .request-id").text == request_id
    steps = browser.find_elements(By.CSS_SELECTOR, "#trace ol.timeline li")
    assert steps, browser.find_element(By.ID, "trace").text
    assert {s.find_element(By.CLASS_NAME, "service").text for s in steps} >= {
        "orders", "inventory", "payments"}
    # the malformed event sent with the same request id ends it, parked
    assert "dead-letter" in steps[-1].text and "notifications" in steps[-1].text, \
        browser.find_element(By.ID, "trace").text

    # a search for markup is refused, and said as text
    browser.get(mesh.ops + "/ops?" + urlencode({"trace": MARKUP}))
    said = browser.find_element(By.CSS_SELECTOR, "#trace .error").text
    assert MARKUP in said and "is not a request id" in said
    assert browser.find_element(By.NAME, "trace").get_attribute("value") == MARKUP
    assert browser.find_elements(By.CSS_SELECTOR, "script[data-x]") == []

    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    WebDriverWait(browser, 10).until(lambda b: b.current_url.endswith("/ops/login"))
    browser.get(mesh.ops + "/ops")
    assert browser.current_url == mesh.ops + "/ops/login"


def test_a_customer_gets_403_and_the_public_port_has_no_page(browser, mesh):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    customer = mesh.customer()
    log_in(browser, mesh, customer)
    # the click returns before the answer is shown; the form's page may go between
    # finding its body and reading it
    WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: "this needs the admin role" in b.find_element(By.TAG_NAME, "body").text)
    assert browser.get_cookies() == []
    bearer = {"Authorization": f"Bearer {customer}"}
    assert requests.get(mesh.ops + "/ops", headers=bearer, timeout=10).status_code == 403
    admin = {"Authorization": f"Bearer {mesh.admin_token()}"}
    assert requests.get(mesh.ops + "/ops", headers=admin, timeout=30).status_code == 200
    assert mesh("GET", "/ops", mesh.admin_token()).status_code == 404
    assert mesh("GET", "/ops/login").status_code == 404
