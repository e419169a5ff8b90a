# One command starts the server (`make run`), one runs every test (`make test`).
.PHONY: build run test lint unit-test crash-test dist dist-test clean

build:
	swift build -c release --product coffer

run: build
	.build/release/coffer serve

lint:
	swift format lint --strict -r Sources Tests Package.swift

# In-process suites (the disk-full ones on a small ext4 mount), then the suites that run `coffer` as a child process,
# in their own run: a fork beside the in-process suites would briefly share their descriptors (their directory locks).
unit-test:
	scripts/with-small-fs.sh swift test --skip CofferProcessTests
	swift test --skip-build --filter CofferProcessTests

# The crash loop alone, longer: 100 SIGKILLs of a node under load (COFFER_CRASH_SEED=N replays a schedule).
crash-test:
	COFFER_CRASH_CYCLES=$${COFFER_CRASH_CYCLES:-100} swift test --filter CrashLoopTests

dist:
	scripts/dist.sh

dist-test: dist
	scripts/dist-test.sh

test: lint unit-test dist-test

clean:
	rm -rf .build .build-dist challenge.tar.gz
