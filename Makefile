# One command starts the server (`make run`), one runs every test (`make test`).
.PHONY: build run test test-deps lint unit-test crash-test bench-smoke compose-check dist dist-test clean

build:
	swift build -c release --product coffer

run: build
	.build/release/coffer serve

lint:
	swift format lint --strict -r Sources Tests Package.swift

# In-process suites (the disk-full ones on a small ext4 mount); then the suites that measure the process's own memory
# (`ConstantMemory` in their name), alone so no other test moves it; the fileserver suites (five Python file servers
# each, tens of MiB per test, and a throughput measurement), alone too, so they do not starve the timing-sensitive
# in-process suites on 2 cores; then the suites that run `coffer` as a child
# process, in their own run: a fork beside the in-process suites would briefly share their descriptors (their locks).
unit-test:
	scripts/with-small-fs.sh swift test --skip 'CofferProcessTests|ConstantMemory|FileserverMode|FileserverConsistency'
	swift test --skip-build --filter ConstantMemory
	swift test --skip-build --filter FileserverConsistency
	swift test --skip-build --filter FileserverMode
	swift test --skip-build --filter CofferProcessTests

# The crash loop alone, longer: 100 SIGKILLs of a node under load (COFFER_CRASH_SEED=N replays a schedule).
crash-test:
	COFFER_CRASH_CYCLES=$${COFFER_CRASH_CYCLES:-100} swift test --filter CrashLoopTests

# A few seconds of `coffer bench` against a live node (scripts/bench-smoke.sh). SCRATCH: the build directory.
SCRATCH ?= .build
bench-smoke:
	scripts/bench-smoke.sh $(SCRATCH)

# The deployment files parse: docker-compose.yml (Debian's docker-compose; no Docker engine or registry is needed).
compose-check:
	@docker-compose -f docker-compose.yml config -q && grep -q '^FROM .* AS build' Dockerfile \
	    && echo "compose-check: 1 passed, 0 failed" || { echo "compose-check: 0 passed, 1 failed"; exit 1; }

dist:
	scripts/dist.sh

dist-test: dist
	scripts/dist-test.sh

# Installs what the suites need and this machine lacks (Debian packages, moto); nothing when all is there.
test-deps:
	scripts/install-test-deps.sh

test: test-deps lint unit-test bench-smoke compose-check dist-test

clean:
	rm -rf .build .build-dist challenge.tar.gz
