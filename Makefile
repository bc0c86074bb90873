# homelab.immich: `make demo` and `make test` do all of their own set-up on a fresh Debian 12.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/build/collections
export ANSIBLE_ROLES_PATH := $(CURDIR)/roles
LAB := $(BIN)/python tests/lab/lab.py
COLL := build/collections/ansible_collections/homelab/immich

.PHONY: help setup venv engine images collection demo test lint unit sanity lab-test molecule build docs clean lab-clean lock

help:
	@echo "make demo   - bring up a seeded lab Immich, back it up, wipe it, restore it, print a summary"
	@echo "make test   - lint, unit tests, ansible-test sanity, lab tests and Molecule scenarios"
	@echo "make setup  - only the set-up (venv, Docker engine + compose, lab images)"
	@echo "make build  - the collection tarball, build/dist/homelab-immich-<version>.tar.gz"
	@echo "make docs   - the HTML docs site (modules, roles, guides, changelog) in build/docs, offline"

# Idempotent: the venv is rebuilt only when requirements.txt changes.
$(VENV)/.stamp: requirements.txt
	@command -v $(PY) >/dev/null || { echo "python3 is needed"; exit 1; }
	@$(PY) -c 'import venv, ensurepip' 2>/dev/null || { echo "setup: installing python3-venv"; DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@
venv: $(VENV)/.stamp

engine:
	@bash tests/lab/engine.sh

images: engine build-dir
	@bash tests/lab/images/build.sh > build/lab-images.env.tmp && mv build/lab-images.env.tmp build/lab-images.env && cat build/lab-images.env

# The collection as Ansible sees it (ansible_collections/homelab/immich), a symlink to this tree.
collection:
	@mkdir -p build/collections/ansible_collections/homelab
	@ln -sfn ../../../.. $(COLL)

setup: venv engine build-dir images collection
build-dir:
	@mkdir -p build

demo: setup
	$(BIN)/python tests/lab/demo.py

test: setup
	bash tests/run-all.sh

lint: venv collection
	$(BIN)/ruff check plugins roles molecule tests bench
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production

unit: venv collection
	$(BIN)/pytest -q tests/unit

sanity: venv
	bash tests/sanity.sh

build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path build/dist .

# antsibull-docs + Sphinx, nothing fetched: open build/docs/index.html.
docs: venv
	$(BIN)/python tests/docs/build_site.py

lab-clean:
	$(LAB) destroy-all

lock:
	$(PY) -m venv build/lockvenv && build/lockvenv/bin/pip install -q -r requirements.in && \
	  { echo "# Exact versions, resolved from requirements.in on Python 3.11 (make lock to refresh)."; build/lockvenv/bin/pip freeze; } > requirements.txt
