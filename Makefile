# One command starts the server (`make run`), one runs every test (`make test`).
.PHONY: build run test test-deps lint unit-test crash-test bench-smoke compose-check dist dist-test clean

build:
	swift build -c release --product coffer

run: build
	.build/release/coffer serve

lint:
	swift format lint --strict -r Sources Tests Package.swift

# In-process suites (the disk-full ones on a small ext4 mount); then the suites that measure the process's own memory
# (`ConstantMemory` in their name), alone so no other test moves it; the fileserver-mode suite, which measures
# throughput, alone too; then the suites that run `coffer` as a child
# process, in their own run: a fork beside the in-process suites would briefly share their descriptors (their locks).
unit-test:
	scripts/with-small-fs.sh swift test --skip 'CofferProcessTests|ConstantMemory|FileserverMode'
	swift test --skip-build --filter ConstantMemory
	swift test --skip-build --filter FileserverMode
	swift test --skip-build --filter CofferProcessTests

# The crash loop alone, longer: 100 SIGKILLs of a node under load (COFFER_CRASH_SEED=N replays a schedule).
crash-test:
	COFFER_CRASH_CYCLES=$${COFFER_CRASH_CYCLES:-100} swift test --filter CrashLoopTests

# A few seconds of `coffer bench` (JSON report) against a `coffer serve` on a free loopback port: fails on invalid or
# lost data, on errors or 5xx, or when no request was answered. SCRATCH: the build directory (default .build).
SCRATCH ?= .build
bench-smoke:
	swift build --scratch-path $(SCRATCH) --product coffer
	@set -eu; bin=$(SCRATCH)/debug/coffer; dir=$$(mktemp -d); \
	$$bin serve --listen 127.0.0.1:0 --dir "$$dir/data" 2>"$$dir/serve.log" & pid=$$!; \
	trap 'kill $$pid 2>/dev/null || true; wait $$pid 2>/dev/null || true; rm -rf "$$dir"' EXIT; \
	port=""; for i in $$(seq 200); do \
	    port=$$(sed -n 's/.*address=.*:\([0-9][0-9]*\) .*listening.*/\1/p' "$$dir/serve.log"); \
	    [ -n "$$port" ] && break; sleep 0.05; done; \
	[ -n "$$port" ] || { cat "$$dir/serve.log"; echo "bench-smoke: the node did not start"; exit 1; }; \
	status=0; $$bin bench --url http://127.0.0.1:$$port/store --duration 3s --warmup 1s -c 16 --keys 400 \
	    --size 0-64KiB --mix get=70,put=20,post=5,delete=5 --json >"$$dir/report.json" || status=$$?; \
	requests=$$(awk '/"requests" :/ { gsub(",", ""); print $$3; exit }' "$$dir/report.json"); \
	if [ "$$status" -ne 0 ] || [ "$${requests:-0}" -eq 0 ] || grep -qE '"(5xx|errors)" : [1-9]' "$$dir/report.json"; \
	then cat "$$dir/report.json"; echo "bench-smoke: 0 passed, 1 failed (exit $$status, $${requests:-0} requests)"; exit 1; fi; \
	echo "coffer bench: $$requests requests in 3 s, 0 invalid, 0 lost"; echo "bench-smoke: 1 passed, 0 failed"

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
