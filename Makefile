# Two commands do all the set-up on a fresh Debian machine (run as root):
#   make demo   - the live lab demo (sets itself up first)
#   make test   - the whole test suite (sets itself up first)
# and one builds the node agent's image without Docker or a registry:
#   make image  - daemonset/Dockerfile with podman, as enforcer:dev (scripts/build-image.sh)
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test lint demo bench bench-quick soak clean image

setup: $(STAMP)

# bcc is Debian's python3-bpfcc, visible only to /usr/bin/python3: the venv is made from
# that interpreter with --system-site-packages so `import bcc` works inside it.
$(STAMP): pyproject.toml scripts/install-deps.sh
	bash scripts/install-deps.sh
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]'
	$(VENV)/bin/enforcer kernel-headers
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check enforcer tests bench

# The kernel tests one at a time (the agent's first, alone), the pure tests beside the rest in a
# second process at the lowest CPU priority (scripts/test.sh).
test: setup lint
	bash scripts/test.sh

demo: setup
	$(VENV)/bin/enforcer demo

bench: setup
	$(PY) -m bench.run
	$(PY) -m bench.readme

bench-quick: setup
	$(PY) -m bench.run --quick

# 30 minutes of pod and policy churn with traffic in a lab: resources flat, no wrong verdict.
soak: setup
	$(PY) -m bench.soak --minutes 30 --out bench/results/soak.json

# Installs podman, buildah, runc and debootstrap if missing; the Debian base is cached in
# .cache/image/ (a second build with nothing changed takes seconds). The container test
# (tests/deploy/test_image_container.py) runs the same script once per session.
image:
	bash scripts/build-image.sh

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

# End-to-end on real clusters (not run in CI: no Docker engine or hypervisor there).
.PHONY: kind-e2e vagrant-e2e
kind-e2e:
	bash scripts/kind-e2e.sh

vagrant-e2e:
	bash scripts/vagrant-e2e.sh
