# Switchboard: make deps | build | test | run | stop | bench | images | test-containers | test-broker-restart | format
# The logic lives in deploy/scripts/, so each target is one command that also works by hand.
SHELL := /bin/bash
SCRIPTS := deploy/scripts

.DEFAULT_GOAL := build
.PHONY: deps build test run stop bench images test-containers test-broker-restart format

# Debian packages, librdkafka >= 2.1 and the Tansu broker; quick when all are present.
deps:
	bash $(SCRIPTS)/install-deps.sh

build: deps
	swift build

# Fresh servers on the test ports, the whole suite, servers stopped whatever happens.
# Extra swift test arguments: make test TEST_ARGS="--filter UnitTests"
test: deps
	bash $(SCRIPTS)/test.sh $(TEST_ARGS)

# Release build, servers and six services in the foreground until Ctrl-C.
run: deps
	bash $(SCRIPTS)/run.sh

# Whatever `make run` left behind (e.g. after its terminal was closed).
stop:
	bash $(SCRIPTS)/run.sh down

# All scenarios, or some: make bench BENCH="fanout reconnect" (see deploy/scripts/bench.sh)
bench: deps
	bash $(SCRIPTS)/bench.sh $(BENCH)

# The container image without a Docker engine or registry: a debootstrap Debian 12 base, release
# binaries with the Swift runtime linked in, deploy/docker/Dockerfile's final stage, with podman.
images: deps
	bash $(SCRIPTS)/images.sh

# The six services as containers of that image (built first if it does not hold the current
# sources) against fresh test servers: ready, one chat message, non-root, read-only, SIGTERM.
test-containers: deps
	SB_TEST_IMAGE=release bash $(SCRIPTS)/test.sh --filter ContainerTests

# The whole stack through a Kafka broker restart (a Tansu of the test's own), alone (make test runs it too):
# see docs/reliability.md#a-kafka-broker-restart.
test-broker-restart: deps
	bash $(SCRIPTS)/test.sh --filter BrokerRestartFlowTests

# The Swift sources in .swift-format's style (make test checks it, through deploy/validate.sh).
format:
	swift format format --in-place --recursive --configuration .swift-format Package.swift Services Shared Tests
