# The workbench's commands. `make demo` sets everything up and renders the quickstart report;
# `make test` runs the suite (what CI runs), `make test-fast` its fast tier; `make check` lints
# and type-checks.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The exact versions installed (a pip freeze of a clean install): installs do not drift.
LOCK := constraints.txt

.PHONY: install bytecode demo test test-fast check format lab clean-stack lock

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing into $(VENV) ..."
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -c $(LOCK) -e '.[dev]'
	@$(PY) -c "from workbench.report import ensure_kernel; ensure_kernel()"
	@touch $(STAMP)

# The project's own modules compiled once: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# every interpreter that imports them (services, kernels, load workers, each command) would
# compile them again, ~70 ms of CPU for the workbench's. Up-to-date files are skipped (~40 ms).
bytecode: install
	@$(PY) -m compileall -q workbench service

demo: bytecode
	@$(VENV)/bin/workbench demo

# Four pytest-xdist workers on the two cores: the suite waits on servers, kernels and browsers
# much of the time (two workers kept 1.15 cores busy on average, four 1.6: 348 -> 246 s). Each
# test file on one worker so that its module fixtures (a rendered report, a built wheel) are made
# once: `--dist loadfile`, since `loadgroup` no longer groups on pytest 9.2 (pytest-xdist#1386: the
# report's quickstart rendered on both workers). Then the tests marked `window` (they time an
# outage or a stall but need little CPU: mostly waiting) three at a time (four failed outage
# checks twice in three runs; three passed six in six), and the tests marked
# `alone` (they measure time or CPU share) one at a time. `make test TEST_WORKERS=0` runs the
# whole suite in one process.
TEST_WORKERS ?= 4
# Bytecode written while testing, whatever the environment says: every xdist worker and tier
# collects the tests (pytest caches their rewritten modules only where bytecode may be written:
# collection 3.9 -> 2.5 s of CPU per process).
test test-fast: export PYTHONDONTWRITEBYTECODE =
test: bytecode
ifeq ($(TEST_WORKERS),0)
	@$(PY) -m pytest -q
else
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not alone and not window"
	@$(PY) -m pytest -q -n 3 -m window
	@$(PY) -m pytest -q -m alone
endif

# The unit and component tier (no end-to-end runs of CLIs, notebooks and faults): before a commit.
# Split as `test` is: the tier's few `alone` and `window` tests (they time a generator or its
# seconds) after the rest, one at a time.
test-fast: bytecode
ifeq ($(TEST_WORKERS),0)
	@$(PY) -m pytest -q -m "not slow"
else
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder -m "not slow and not alone and not window"
	@$(PY) -m pytest -q -m "(alone or window) and not slow"
endif

check: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Notebooks are their own source (edited in Lab): committed without outputs or execution counts.
format: install
	$(VENV)/bin/jupyter nbconvert --log-level=WARN --clear-output --inplace notebooks/*.ipynb
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

lab: install
	$(VENV)/bin/workbench lab

# Re-resolve the dependencies in a fresh venv and write the lock (after editing pyproject.toml).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	{ sed -n '1,2p' $(LOCK); .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock

clean-stack:
	-@$(VENV)/bin/workbench stack down
	rm -rf data/stack
