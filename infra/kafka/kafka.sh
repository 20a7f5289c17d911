#!/usr/bin/env bash
# Runs one Apache Kafka broker in KRaft mode (combined broker+controller) on 127.0.0.1.
#   kafka.sh fetch            download the pinned jars (pom.xml) once into .cache/lib
#   kafka.sh start            fetch if needed, format storage if new, start, wait until it answers
#   kafka.sh run              the same in the foreground (exec java), for a process supervisor
#   kafka.sh stop             stop the broker started from this data directory (by pid)
#   kafka.sh status           exit 0 when the broker answers on its port
#   kafka.sh config           (re)write server.properties only, and print its path
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1), KAFKA_DATA_DIR (var/kafka),
#   KAFKA_SECRETS_DIR (var/secrets/kafka), KAFKA_HEAP (512m), KAFKA_JVM_OPTS (-XX:TieredStopAtLevel=1),
#   KAFKA_START_TIMEOUT (60 seconds).
# Security (infra/kafka/security.py): both listeners take SASL on 127.0.0.1 (no TLS: local only). The
# client listener takes SCRAM-SHA-256 (users made by `veritas init`) and PLAIN for the super user
# `admin`, whose password is $KAFKA_SECRETS_DIR/admin.password (made here, mode 0600, if missing);
# the broker reaches its controller as admin too. ACLs decide the rest, deny by default.
# KAFKA_JVM_OPTS: by default the JIT stops at C1. On a small machine (2 cores) a young broker's
# C2 compiler thread took a third of a core for minutes under light load, and the broker's CPU per
# command halved without it (bench/README.md). Set KAFKA_JVM_OPTS= for the JVM's default tiers.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PORT="${KAFKA_PORT:-9092}"
CPORT="${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
DATA="${KAFKA_DATA_DIR:-$ROOT/var/kafka}"
HEAP="${KAFKA_HEAP:-512m}"
JVM_OPTS="${KAFKA_JVM_OPTS--XX:TieredStopAtLevel=1}"
LIB="$HERE/.cache/lib"
PIDFILE="$DATA/broker.pid"
SECRETS="${KAFKA_SECRETS_DIR:-$ROOT/var/secrets/kafka}"

fetch() {
  if [ -f "$LIB/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "kafka.sh: Maven (mvn) is needed to fetch the broker jars" >&2; exit 3; }
  echo "kafka.sh: fetching the Kafka broker jars from Maven Central (once)" >&2
  rm -rf "$LIB"
  mvn -q -B -f "$HERE/pom.xml" package -Dmaven.repo.local="$HERE/.cache/m2" >&2
  touch "$LIB/.complete"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

admin_password() {
  local file="$SECRETS/admin.password" tmp
  if [ ! -s "$file" ]; then
    (umask 077 && mkdir -p "$SECRETS")
    tmp="$SECRETS/.admin.password.$$"
    (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$tmp")
    ln "$tmp" "$file" 2>/dev/null || true  # another starter may have won: its password stays
    rm -f "$tmp"
  fi
  tr -d '\n' <"$file"
}

write_config() {
  mkdir -p "$DATA/logs" "$DATA/log-dirs"
  local pw plain
  pw="$(admin_password)"
  plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"$pw\" user_admin=\"$pw\";"
  # The file holds the admin password: only its owner reads it.
  touch "$DATA/server.properties" && chmod 600 "$DATA/server.properties"
  cat > "$DATA/server.properties" <<CFG
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=CLIENT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=CLIENT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
inter.broker.listener.name=CLIENT
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-256,PLAIN
listener.name.client.plain.sasl.jaas.config=$plain
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs=$DATA/log-dirs
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
group.initial.rebalance.delay.ms=0
# Recovery: a killed transactional producer's open transaction is aborted soon after its
# transaction.timeout.ms (the coordinator's sweep runs every 10 s by default), and consumers may
# use short sessions so that a dead member's partitions move in seconds.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
group.min.session.timeout.ms=2000
auto.create.topics.enable=false
CFG
}

java_run() {
  java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -Dkafka.logs.dir="$DATA/logs" \
    -cp "$LIB/*" "$@"
}

format_if_new() {
  write_config
  if [ ! -f "$DATA/log-dirs/meta.properties" ]; then
    java_run kafka.tools.StorageTool format -t "$(java_run kafka.tools.StorageTool random-uuid)" \
      -c "$DATA/server.properties" >"$DATA/logs/format.log" 2>&1
  fi
}

run() {
  if running && [ "$(cat "$PIDFILE")" != "$$" ]; then echo "kafka.sh: broker already running (pid $(cat "$PIDFILE"))" >&2; exit 4; fi
  fetch
  format_if_new
  echo $$ >"$PIDFILE"  # exec keeps this pid: the supervisor's child is the broker itself
  # shellcheck disable=SC2086  # JVM_OPTS is a list of options
  exec java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError $JVM_OPTS \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -Dkafka.logs.dir="$DATA/logs" \
    -cp "$LIB/*" kafka.Kafka "$DATA/server.properties"
}

start() {
  if running; then echo "kafka.sh: broker already running (pid $(cat "$PIDFILE"))" >&2; return 0; fi
  if port_open "$PORT"; then echo "kafka.sh: port $PORT is taken by another process" >&2; exit 4; fi
  fetch
  format_if_new
  # shellcheck disable=SC2086  # JVM_OPTS is a list of options
  nohup java -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError $JVM_OPTS \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -Dkafka.logs.dir="$DATA/logs" \
    -cp "$LIB/*" kafka.Kafka "$DATA/server.properties" >"$DATA/logs/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-60}))
  until port_open "$PORT"; do
    if ! running; then echo "kafka.sh: broker exited; see $DATA/logs" >&2; tail -20 "$DATA/logs/stdout.log" >&2; exit 5; fi
    if [ $SECONDS -ge $deadline ]; then echo "kafka.sh: broker did not answer in time" >&2; exit 6; fi
    sleep 0.5
  done
  echo "kafka.sh: broker up on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))" >&2
}

stop() {
  if ! running; then rm -f "$PIDFILE"; return 0; fi
  local pid; pid="$(cat "$PIDFILE")"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$PIDFILE"
  echo "kafka.sh: broker stopped" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  run) run ;;
  stop) stop ;;
  status) port_open "$PORT" ;;
  config) write_config && echo "$DATA/server.properties" ;;
  *) echo "usage: $0 fetch|start|run|stop|status|config" >&2; exit 2 ;;
esac
