#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) without Docker.
#
#   deploy/kafka/local.sh start     fetch jars once, format once, start, wait until ready
#   deploy/kafka/local.sh stop      SIGTERM, wait up to 30 s, then SIGKILL
#   deploy/kafka/local.sh status    exit 0 + "running pid N on host:port" when up, exit 1 when down
#   deploy/kafka/local.sh logs [-f] tail the server log (-f follows)
#
# Environment:
#   ROLLGUARD_KAFKA_HOST             listener host                (127.0.0.1)
#   ROLLGUARD_KAFKA_PORT             PLAINTEXT listener port      (9092)
#   ROLLGUARD_KAFKA_CONTROLLER_PORT  KRaft controller port        (9093)
#   ROLLGUARD_KAFKA_DATA             data dir: config, logs, pid  (<repo>/.kafka)
#   ROLLGUARD_KAFKA_SASL_PORT        if set, add a SASL_PLAINTEXT (PLAIN) listener on this port
#   ROLLGUARD_KAFKA_SASL_PASSWORD    password of SASL user "rollguard" (rollguard-secret)
#   ROLLGUARD_KAFKA_RESET=1          stop and wipe the data dir before starting
#   ROLLGUARD_KAFKA_START_TIMEOUT    seconds to wait for readiness (90)
#   ROLLGUARD_KAFKA_VERSION          override the Kafka version in pom.xml
#   ROLLGUARD_KAFKA_HEAP_OPTS        JVM heap flags               (-Xmx1G -Xms256m)
#   JAVA_HOME                        used if set, else `java` on PATH
set -euo pipefail

KAFKA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$KAFKA_DIR/../.." && pwd)"
LIB_DIR="$KAFKA_DIR/lib"
LIB_MARKER="$LIB_DIR/.rollguard-complete"

HOST="${ROLLGUARD_KAFKA_HOST:-127.0.0.1}"
PORT="${ROLLGUARD_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${ROLLGUARD_KAFKA_CONTROLLER_PORT:-9093}"
DATA_DIR="${ROLLGUARD_KAFKA_DATA:-$REPO_DIR/.kafka}"
SASL_PORT="${ROLLGUARD_KAFKA_SASL_PORT:-}"
SASL_PASSWORD="${ROLLGUARD_KAFKA_SASL_PASSWORD:-rollguard-secret}"
START_TIMEOUT="${ROLLGUARD_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT=30
HEAP_OPTS="${ROLLGUARD_KAFKA_HEAP_OPTS:--Xmx1G -Xms256m}"

CONFIG="$DATA_DIR/server.properties"
LOG_DIR="$DATA_DIR/logs"          # log4j output
KRAFT_DIR="$DATA_DIR/kraft"       # log.dirs (topic data + metadata log)
PID_FILE="$DATA_DIR/kafka.pid"
ENDPOINT_FILE="$DATA_DIR/endpoint"
DATA_MARKER="$DATA_DIR/.rollguard-kafka-data"
SERVER_LOG="$LOG_DIR/server.log"
JAVA=java

die() { echo "local.sh: error: $*" >&2; exit 1; }
info() { echo "local.sh: $*"; }

# ---------------------------------------------------------------- prerequisites

check_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif ! command -v java >/dev/null 2>&1; then
        die "java not found. Kafka 4.x needs Java 17+: install it (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME."
    fi
    local spec major
    spec="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1)"
    major="${spec#1.}"; major="${major%%.*}"
    if ! [[ "$major" =~ ^[0-9]+$ ]] || (( major < 17 )); then
        die "$JAVA is Java '${spec:-unknown}', Kafka 4.x needs Java 17+: install it (apt-get install -y openjdk-17-jre-headless) or point JAVA_HOME at a JDK 17+ (e.g. /usr/lib/jvm/java-17-openjdk-amd64)."
    fi
}

lib_stamp() {
    # Changes whenever pom.xml or the requested version changes, so edits trigger a re-fetch.
    echo "pom-sha256=$(sha256sum "$KAFKA_DIR/pom.xml" | cut -d' ' -f1) kafka.version=${ROLLGUARD_KAFKA_VERSION:-pom}"
}

fetch_jars() {
    if [[ -f "$LIB_MARKER" && "$(cat "$LIB_MARKER")" == "$(lib_stamp)" ]]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn (Apache Maven) not found; it is needed once to fetch the Kafka jars into $LIB_DIR: install it (Debian/Ubuntu: apt-get install -y maven)."
    info "fetching Kafka jars with Maven into $LIB_DIR (one-time)..."
    local tmp="$KAFKA_DIR/lib.tmp.$$"
    rm -rf "$tmp"
    local args=(-B -q -Dstyle.color=never -f "$KAFKA_DIR/pom.xml"
                dependency:copy-dependencies -DincludeScope=runtime "-DoutputDirectory=$tmp")
    if [[ -n "${ROLLGUARD_KAFKA_VERSION:-}" ]]; then
        args+=("-Dkafka.version=$ROLLGUARD_KAFKA_VERSION")
    fi
    # Output captured: Debian's Maven 3.8 prints stray ANSI resets even with -B -q.
    local mvn_log
    mvn_log="$(mktemp)"
    if ! mvn "${args[@]}" >"$mvn_log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$mvn_log" | tail -n 40 >&2
        rm -rf "$tmp" "$mvn_log"
        die "Maven could not fetch the Kafka jars (is Maven Central reachable? see output above)"
    fi
    rm -f "$mvn_log"
    compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || { rm -rf "$tmp"; die "Maven ran but no kafka_2.13 jar landed in $tmp"; }
    lib_stamp >"$tmp/.rollguard-complete"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
}

kafka_version() {
    local jar
    jar="$(compgen -G "$LIB_DIR/kafka_2.13-*.jar" | head -n1)"
    jar="${jar##*/kafka_2.13-}"
    echo "${jar%.jar}"
}

# ---------------------------------------------------------------- process helpers

# Alive and not a zombie (an exited JVM may linger as a zombie until init reaps it).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local state
    state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)"
    [[ "$state" != Z && -n "$state" ]]
}

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# Prints the pid of our running broker, or returns 1.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # Guard against pid reuse: it must be a kafka.Kafka JVM using our config.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka\.Kafka $CONFIG" || return 1
    echo "$pid"
}

# Tail of what this start appended to the server log (from byte LOG_OFFSET), plus JVM stdout/stderr.
LOG_OFFSET=0
tail_log() {
    local n="${1:-40}"
    if [[ -s "$SERVER_LOG" ]] && (( $(stat -c %s "$SERVER_LOG") > LOG_OFFSET )); then
        echo "---- last $n lines of $SERVER_LOG ----" >&2
        tail -c +"$((LOG_OFFSET + 1))" "$SERVER_LOG" | tail -n "$n" >&2
    fi
    if [[ -s "$LOG_DIR/kafka.out" ]]; then
        echo "---- last $n lines of $LOG_DIR/kafka.out (JVM stdout/stderr) ----" >&2
        tail -n "$n" "$LOG_DIR/kafka.out" >&2
    fi
}

# ---------------------------------------------------------------- config + format

write_config() {
    local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
    local advertised="PLAINTEXT://$HOST:$PORT"
    local protomap="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if [[ -n "$SASL_PORT" ]]; then
        [[ "$SASL_PASSWORD" != *[\"\\]* ]] || die "ROLLGUARD_KAFKA_SASL_PASSWORD must not contain '\"' or '\\'"
        listeners+=",SASL_PLAINTEXT://$HOST:$SASL_PORT"
        advertised+=",SASL_PLAINTEXT://$HOST:$SASL_PORT"
        protomap+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
    fi
    local old_umask
    old_umask="$(umask)"
    umask 077   # the file may hold the SASL password
    cat >"$CONFIG.tmp" <<EOF
# Generated by deploy/kafka/local.sh on every start; edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=PLAINTEXT
log.dirs=$KRAFT_DIR

# single node: everything replicated once
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# 1 partition instead of 50 for internal topics: fewer files, less recovery work on a small machine.
# (The first consumer group on a fresh data dir still takes ~3 s: client-side coordinator retry.)
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true

# small shared machine
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=72
EOF
    if [[ -n "$SASL_PORT" ]]; then
        cat >>"$CONFIG.tmp" <<EOF

# SASL_PLAINTEXT listener, mechanism PLAIN, single user "rollguard"
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="rollguard" password="$SASL_PASSWORD" user_rollguard="$SASL_PASSWORD";
EOF
    fi
    mv "$CONFIG.tmp" "$CONFIG"
    umask "$old_umask"
    local endpoint="$HOST:$PORT"
    [[ -z "$SASL_PORT" ]] || endpoint+=" (SASL_PLAINTEXT $HOST:$SASL_PORT)"
    echo "$endpoint" >"$ENDPOINT_FILE"
}

jvm_common() {
    # shellcheck disable=SC2206  # HEAP_OPTS is intentionally word-split
    JVM_ARGS=($HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent
              -Djava.awt.headless=true
              "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.xml"
              "-Dkafka.logs.dir=$LOG_DIR"
              -cp "$LIB_DIR/*")
}

format_storage() {
    if [[ -f "$KRAFT_DIR/meta.properties" ]]; then
        local formatted
        formatted="$(cat "$DATA_DIR/kafka.version" 2>/dev/null || echo unknown)"
        if [[ "$formatted" != "$(kafka_version)" ]]; then
            echo "local.sh: warning: data dir was formatted by Kafka $formatted, running $(kafka_version); use ROLLGUARD_KAFKA_RESET=1 if it fails to start" >&2
        fi
        return 0
    fi
    local cluster_id
    cluster_id="$(cat "$DATA_DIR/cluster.id" 2>/dev/null || true)"
    if [[ -z "$cluster_id" ]]; then
        # Kafka cluster ids are 16 random bytes, base64url without padding (22 chars).
        cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        echo "$cluster_id" >"$DATA_DIR/cluster.id"
    fi
    info "formatting KRaft storage in $KRAFT_DIR (cluster id $cluster_id)"
    jvm_common
    if ! "$JAVA" "${JVM_ARGS[@]}" -Drollguard.log.name=storage-tool \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" >"$LOG_DIR/format.out" 2>&1; then
        cat "$LOG_DIR/format.out" >&2
        die "kafka.tools.StorageTool format failed"
    fi
    kafka_version >"$DATA_DIR/kafka.version"
}

# ---------------------------------------------------------------- commands

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        info "not running"
        return 0
    fi
    info "stopping pid $pid (SIGTERM)"
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while alive "$pid"; do
        if (( waited >= STOP_TIMEOUT * 10 )); then
            echo "local.sh: pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            local i
            for i in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 0.2; done
            if alive "$pid"; then echo "local.sh: warning: pid $pid survived SIGKILL (after ${i} checks)" >&2; fi
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    info "stopped"
}

wipe_data() {
    [[ -e "$DATA_DIR" ]] || return 0
    case "$(cd "$DATA_DIR" && pwd -P)" in
        /|"$HOME"|"$(cd "$REPO_DIR" && pwd -P)") die "refusing to wipe $DATA_DIR" ;;
    esac
    if [[ -n "$(ls -A "$DATA_DIR")" && ! -f "$DATA_MARKER" ]]; then
        die "refusing to wipe $DATA_DIR: not empty and not created by local.sh (no $(basename "$DATA_MARKER"))"
    fi
    info "ROLLGUARD_KAFKA_RESET=1: wiping $DATA_DIR"
    rm -rf "$DATA_DIR"
}

cmd_start() {
    [[ "$START_TIMEOUT" =~ ^[0-9]+$ ]] || die "ROLLGUARD_KAFKA_START_TIMEOUT must be whole seconds"
    check_java
    local pid
    if [[ "${ROLLGUARD_KAFKA_RESET:-0}" == 1 ]]; then
        cmd_stop >/dev/null
        wipe_data
    elif pid="$(running_pid)"; then
        local running_at wanted="$HOST:$PORT"
        running_at="$(cat "$ENDPOINT_FILE" 2>/dev/null || echo "$HOST:$PORT")"
        [[ -z "$SASL_PORT" ]] || wanted+=" (SASL_PLAINTEXT $HOST:$SASL_PORT)"
        info "already running pid $pid on $running_at"
        if [[ "$running_at" != "$wanted" ]]; then
            echo "local.sh: warning: requested $wanted differs from the running broker; run 'local.sh stop' first to apply it" >&2
        fi
        return 0
    fi

    local p
    for p in "$PORT" "$CONTROLLER_PORT" ${SASL_PORT:+"$SASL_PORT"}; do
        if port_open "$HOST" "$p"; then
            die "$HOST:$p is already in use by another process (not the broker of $DATA_DIR); stop it or set ROLLGUARD_KAFKA_PORT / ROLLGUARD_KAFKA_CONTROLLER_PORT / ROLLGUARD_KAFKA_DATA"
        fi
    done

    fetch_jars
    mkdir -p "$DATA_DIR" "$LOG_DIR"
    touch "$DATA_MARKER"
    write_config
    format_storage

    # Only look for the readiness line in what this run appends to the log.
    LOG_OFFSET=0
    [[ -f "$SERVER_LOG" ]] && LOG_OFFSET="$(stat -c %s "$SERVER_LOG")"

    jvm_common
    info "starting Kafka $(kafka_version) on $(cat "$ENDPOINT_FILE"), data in $DATA_DIR"
    # setsid: own session, so the broker survives the caller's terminal/process group going away.
    # The inner bash writes its own pid and execs java, so the pid file is the JVM's pid.
    # shellcheck disable=SC2016  # expanded by the inner bash
    nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$JAVA" "${JVM_ARGS[@]}" kafka.Kafka "$CONFIG" \
        >"$LOG_DIR/kafka.out" 2>&1 </dev/null &

    local deadline=$((SECONDS + START_TIMEOUT)) started=0
    while (( SECONDS < deadline )); do
        sleep 0.5
        if ! pid="$(running_pid)"; then
            # Give the launcher a moment to write the pid file before declaring death.
            if (( SECONDS + START_TIMEOUT - deadline < 3 )); then continue; fi
            tail_log 60
            die "Kafka exited during startup (see $SERVER_LOG)"
        fi
        if (( ! started )); then
            local size
            size="$(stat -c %s "$SERVER_LOG" 2>/dev/null || echo 0)"
            (( size >= LOG_OFFSET )) || LOG_OFFSET=0   # log rolled over meanwhile
            if tail -c +"$((LOG_OFFSET + 1))" "$SERVER_LOG" 2>/dev/null | grep -q "Kafka Server started"; then
                started=1
            fi
        fi
        if (( started )) && port_open "$HOST" "$PORT" \
                && { [[ -z "$SASL_PORT" ]] || port_open "$HOST" "$SASL_PORT"; }; then
            info "ready: running pid $pid on $(cat "$ENDPOINT_FILE") after $((SECONDS + START_TIMEOUT - deadline))s"
            return 0
        fi
    done
    tail_log 60
    echo "local.sh: error: Kafka not ready after ${START_TIMEOUT}s; stopping it" >&2
    cmd_stop >&2 || true
    exit 1
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid $pid on $(cat "$ENDPOINT_FILE" 2>/dev/null || echo "$HOST:$PORT")"
        return 0
    fi
    echo "not running"
    return 1
}

cmd_logs() {
    [[ -f "$SERVER_LOG" ]] || die "no log yet at $SERVER_LOG"
    if [[ "${1:-}" == "-f" ]]; then
        exec tail -n 100 -F "$SERVER_LOG"
    fi
    tail -n "${1:-100}" "$SERVER_LOG"
}

usage() {
    sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

case "${1:-}" in
    start)  cmd_start ;;
    stop)   cmd_stop ;;
    status) cmd_status ;;
    logs)   shift; cmd_logs "$@" ;;
    *)      usage ;;
esac
