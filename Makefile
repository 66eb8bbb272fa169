# The two commands of the README:
#   make demo   installs what is missing, builds, runs the bundled example end to end
#   make test   installs what is missing, runs the whole test suite
SHELL := /bin/bash
APT_PACKAGES := zlib1g-dev liblz4-dev libcurl4-openssl-dev pkg-config
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT_BUILD_FLAGS ?=

.PHONY: deps demo test build release bench clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

release: deps
	swift build -c release

demo: build
	@bash examples/run-demo.sh "$$(swift build $(SWIFT_BUILD_FLAGS) --show-bin-path)/anduin"

test: deps
	swift test $(SWIFT_BUILD_FLAGS)

clean:
	rm -rf .build examples/data examples/out
