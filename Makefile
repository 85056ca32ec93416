# The two commands a newcomer needs: `make run` and `make test`.
# Python 3.11, 3.12 or 3.13: `make test PYTHON=python3.13`. Each has a virtualenv
# of its own (.venv for 3.11, .venv-python3.13 ...); .ci/find-python finds the
# interpreter on PATH or under pyenv.
PYTHON ?= python3.11
VENV   := $(if $(filter python3.11,$(PYTHON)),.venv,.venv-$(notdir $(PYTHON)))
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test unit integration e2e test-cluster bench broker docs image clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || "$$(bash .ci/find-python $(PYTHON))" -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,docs]'
	touch $(STAMP)

run: install
	$(BIN)/mesh up

# Tests need the real RabbitMQ, PostgreSQL and Redis; start (or install) them when absent.
broker:
	@bash .ci/ensure-services

test: install broker
	$(BIN)/pytest -p no:cacheprovider tests/unit tests/integration tests/e2e tests/cluster

unit: install
	$(BIN)/pytest -p no:cacheprovider tests/unit

integration: install broker
	$(BIN)/pytest -p no:cacheprovider tests/integration

e2e: install broker
	$(BIN)/pytest -p no:cacheprovider tests/e2e

# Three RabbitMQ nodes of its own on loopback (root: they run as the rabbitmq user;
# skipped for anyone else); part of `make test`, alone here with its figures shown.
test-cluster: install broker
	$(BIN)/pytest -p no:cacheprovider -s tests/cluster

# The documentation site (docs/, mkdocs.yml) into var/site; a broken link fails it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The mesh beside stock nameko and raw py-amqp; prints a table, writes var/bench.json.
bench: install broker
	$(BIN)/python -m bench

# The one image every container runs (needs a Docker daemon; CI builds none).
VERSION := $(shell sed -n 's/^version = //p' setup.cfg)
image:
	docker build -t nameko-mesh:$(VERSION) .

clean:
	rm -rf .venv .venv-python3.* var .pytest_cache
