# The two commands of the README:
#   make demo   installs what is missing, builds, runs the bundled example end to end
#   make test   installs what is missing, runs the whole test suite
SHELL := /bin/bash
APT_PACKAGES := zlib1g-dev liblz4-dev libcurl4-openssl-dev pkg-config python3-venv nginx-light
# Test peers from PyPI, in a venv of the project's own (tests find it at .venv-test).
PY_TEST_PACKAGES := osmem-server==0.1.6
VENV := .venv-test
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT_BUILD_FLAGS ?=

.PHONY: deps test-deps demo test build release bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test-deps: deps
	@[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check $(PY_TEST_PACKAGES)

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

release: deps
	swift build -c release

demo: build
	@bash examples/run-demo.sh "$$(swift build $(SWIFT_BUILD_FLAGS) --show-bin-path)/anduin"

test: test-deps
	swift test $(SWIFT_BUILD_FLAGS)

clean:
	rm -rf .build $(VENV) examples/data examples/out examples/live
