# The two commands the README promises: `make demo` and `make test`. Both install what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install broker broker-stop demo test unit integration lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

broker:
	deploy/kafka/local.sh start

broker-stop:
	deploy/kafka/local.sh stop

demo: install broker
	$(BIN)/rollguard demo

lint: install
	$(BIN)/ruff check .

# mypy cannot follow the editable install's import hook, so it checks a link tree shaped like the wheel.
typecheck: install
	rm -rf build/typecheck && mkdir -p build/typecheck/rollguard
	for f in rollguard/*; do ln -s "$(CURDIR)/$$f" build/typecheck/rollguard/; done
	for p in streams guards detectors; do ln -s "$(CURDIR)/$$p" build/typecheck/rollguard/$$p; done
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml -p rollguard

unit: install
	$(BIN)/pytest -q tests/unit

integration: install broker
	ROLLGUARD_REQUIRE_KAFKA=1 $(BIN)/pytest -q tests/integration

test: install broker lint typecheck
	ROLLGUARD_REQUIRE_KAFKA=1 $(BIN)/pytest -q --reruns 2 --reruns-delay 2 tests

bench: install broker
	$(BIN)/python -m bench

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache
