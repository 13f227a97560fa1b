# Ballast developer entry points. Logic lives in scripts/ and the `ballast` CLI; make only wraps it.
.DEFAULT_GOAL := all

UV ?= uv
export UV_PYTHON_DOWNLOADS := never
# bootstrap.sh may install uv with `pip --user`.
export PATH := $(HOME)/.local/bin:$(PATH)
RUN := $(UV) run --frozen
# `make run` uses the environment install-run made (no dev group synced in).
RUN_APP := $(UV) run --frozen --no-sync
SRC := libs/common/src services/api/src services/ui/src services/jobs/src services/backup/src
# Debian packages for the throwaway test servers, only when neither the binaries nor an env URL exist.
DEB_PKGS := $(if $(BALLAST_TEST_POSTGRES_URL)$(wildcard /usr/lib/postgresql/*/bin/initdb),,postgresql) \
	$(if $(BALLAST_TEST_REDIS_URL)$(shell command -v redis-server),,redis-server) \
	$(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(shell command -v podman),,podman buildah runc uidmap fuse-overlayfs slirp4netns) \
	$(if $(shell command -v debootstrap),,debootstrap) $(if $(shell command -v promtool),,prometheus) \
	$(if $(shell command -v npm),,npm) $(if $(shell command -v unzip),,unzip) \
	$(if $(BALLAST_TEST_S3_URL)$(shell command -v radosgw),,radosgw ceph-mon ceph-osd) \
	$(if $(shell command -v pgbackrest),,pgbackrest)

.PHONY: install
install: ## Install uv (and missing server packages as root), then sync every package and group
	scripts/bootstrap.sh $(strip $(DEB_PKGS))
	$(UV) sync --frozen --all-packages --all-groups

.PHONY: format
format: ## Fix lint findings and format the code (ruff --fix, black)
	$(RUN) ruff check --fix .
	$(RUN) black .

.PHONY: lint
lint: ## Lint: ruff, black --check, import contracts, mypy, then ESLint (lint-js)
	$(RUN) ruff check . && $(RUN) black --check .
	$(RUN) lint-imports
	@$(MAKE) --no-print-directory typecheck
	@$(MAKE) --no-print-directory lint-js

# The browser code's tooling (ESLint only; its node tests need no package): npm ci from the
# committed lock file whenever the lock file is newer than the install.
FRONTEND := services/ui/frontend
$(FRONTEND)/node_modules/.package-lock.json: $(FRONTEND)/package-lock.json
	cd $(FRONTEND) && npm ci --no-audit --no-fund --loglevel=error

.PHONY: lint-js
lint-js: $(FRONTEND)/node_modules/.package-lock.json ## Lint the browser code (services/ui/src/ballast_ui/frontend) with ESLint
	cd $(FRONTEND) && npm run --silent lint

.PHONY: typecheck
typecheck: ## Type-check the packages with mypy
	$(RUN) mypy $(SRC)

.PHONY: test
test: install lint ## Lint, then every test with coverage (scripts/test.sh: parallel, then e2e/timing alone; fails under 90 %)
	scripts/test.sh

.PHONY: test-integration
test-integration: ## Run only the tests against real PostgreSQL / Redis / S3 servers
	$(RUN) pytest -m integration

.PHONY: test-e2e
test-e2e: ## Run only the end-to-end tests (local stack in Chromium)
	$(RUN) pytest -m e2e

.PHONY: migrate
migrate: ## Apply database migrations (ballast db migrate)
	$(RUN) ballast db migrate

.PHONY: seed
seed: ## Load demo data (ballast db seed)
	$(RUN) ballast db seed

.PHONY: install-run
install-run: ## Install uv and only what running needs (no test servers, browsers or dev tools)
	scripts/bootstrap.sh
	$(UV) sync --frozen --all-packages --no-default-groups --inexact

.PHONY: run
run: install-run ## Migrate, seed and run the whole app locally (prints URLs and demo credentials)
	$(RUN_APP) ballast db migrate && $(RUN_APP) ballast db seed && $(RUN_APP) ballast app run

.PHONY: bench
bench: ## Run the benchmarks, writing bench/results/*.json
	@mkdir -p bench/results
	$(RUN) python -m bench.run

.PHONY: migration
migration: ## Autogenerate an Alembic revision: make migration msg="add x"
	@test -n "$(msg)" || { echo 'usage: make migration msg="describe the change"' >&2; exit 2; }
	$(RUN) alembic -c libs/common/src/ballast_common/db/alembic.ini revision --autogenerate -m "$(msg)"

.PHONY: clean
clean: ## Remove caches and test/coverage output (keeps var/ data and .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.* var/coverage.xml test-results
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: all
all: lint test ## Lint and test (the default)

.PHONY: images
images: ## Build the api, ui, jobs and backup images with podman/docker (LOCAL_BASE=1: no registry needed)
	scripts/images.sh

.PHONY: chart-lint
chart-lint: ## helm lint --strict the chart; check values.schema.json matches values.yaml
	$(RUN) python scripts/chart_schema.py check
	$$(scripts/fetch-helm.sh) lint --strict charts/ballast

.PHONY: chart-test
chart-test: ## Chart, k8s/, Tiltfile, deploy script and image tests (helm, kubernetes-validate, promtool, podman)
	$(RUN) pytest tests/charts tests/images
