#!/usr/bin/env bash
# Local test services for Shouwang: PostgreSQL, Mosquitto and Kafka (KRaft) on loopback.
#
#   bash scripts/services.sh install|start|stop|status|restart
#   bash scripts/services.sh kafka-tool <MainClass> [args...]   # e.g. org.apache.kafka.tools.TopicCommand --list ...
#
# Everything lives under $SHOUWANG_SERVICES_DIR (default <repo>/.services); `start` writes
# $SHOUWANG_SERVICES_DIR/env for the test runner. Nothing here touches the system-managed services.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${SHOUWANG_SERVICES_DIR:-$REPO/.services}
CACHE=${SHOUWANG_CACHE_DIR:-$HOME/.cache/shouwang}
PG_PORT=${SHOUWANG_PG_PORT:-55432}
MQTT_PORT=${SHOUWANG_MQTT_PORT:-18831}
# Second listener on the same broker: password file + ACL, as config/mosquitto/ ships them.
MQTT_AUTH_PORT=${SHOUWANG_MQTT_AUTH_PORT:-18832}
KAFKA_PORT=${SHOUWANG_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${SHOUWANG_KAFKA_CONTROLLER_PORT:-19093}
# Pinned so every machine runs the same broker; newest 4.x on Maven Central when written.
KAFKA_VERSION=${SHOUWANG_KAFKA_VERSION:-4.4.0}
LOG4J_VERSION=2.24.3
START_TIMEOUT=${SHOUWANG_START_TIMEOUT:-120}
MOSQUITTO_PROD_CONF=$REPO/config/mosquitto/mosquitto.conf

KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
KAFKA_DIR=$DIR/kafka
MQTT_DIR=$DIR/mosquitto

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------- helpers ----------

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A pid counts as ours only if it is alive and its command line mentions our dir,
# so a stale pid file can never make us signal an unrelated, recycled pid.
pid_alive() {
  local pidfile=$1 marker=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}

# The process in the pidfile exists and has not exited (zombies count as gone). Unlike
# pid_alive it holds from the fork on: a just-forked child shows the parent's command line
# until it execs, which under load can outlast the first check.
pid_started() {
  local pidfile=$1 pid stat
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(<"/proc/$pid/stat") 2>/dev/null || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Sends TERM, waits, then KILL as a last resort, so nothing we started outlives `stop`.
kill_pidfile() {
  local name=$1 pidfile=$2 marker=$3 pid i
  if ! pid_alive "$pidfile" "$marker"; then rm -f "$pidfile"; return 0; fi
  pid=$(<"$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do
    [[ -d /proc/$pid ]] || break
    sleep 0.1
  done
  if [[ -d /proc/$pid ]]; then
    log "$name did not exit within 60s; killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$pidfile"
}

deadline_passed() { (( SECONDS >= $1 )); }

fail_start() { # name, logfile
  log "---- last lines of $2 ----"
  tail -n 30 "$2" >&2 2>/dev/null || true
  die "$1 failed to start (see $2)"
}

# ---------- install ----------

pg_bin() { # newest installed major version
  local d
  for d in /usr/lib/postgresql/*/bin; do [[ -x $d/initdb ]] && echo "$d"; done | sort -V | tail -n 1
}

java_ok() {
  command -v java >/dev/null || return 1
  local v
  v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
  [[ -n $v ]] && (( v >= 17 ))   # Kafka 4.x brokers need Java 17+
}

apt_install() {
  (( EUID == 0 )) || die "missing packages ($*) and not root; install them first"
  log "apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once and retry.
  apt-get install -y -q --no-install-recommends "$@" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "$@" >&2; }
}

install_packages() {
  local pkgs=()
  [[ -n $(pg_bin) && -x $(pg_bin)/initdb ]] || pkgs+=(postgresql postgresql-contrib)
  command -v psql >/dev/null || pkgs+=(postgresql-client)
  [[ -x /usr/sbin/mosquitto ]] || command -v mosquitto >/dev/null || pkgs+=(mosquitto)
  command -v mosquitto_pub >/dev/null || pkgs+=(mosquitto-clients)
  command -v mvn >/dev/null || pkgs+=(maven)
  java_ok || pkgs+=(openjdk-17-jre-headless)
  command -v flock >/dev/null || pkgs+=(util-linux)
  command -v espeak-ng >/dev/null || pkgs+=(espeak-ng)  # alerting: loudspeaker audio (TTS)
  if (( ${#pkgs[@]} )); then apt_install "${pkgs[@]}"; fi
  # The Debian packages may auto-start their own system services; we never use them.
}

kafka_pom() {
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.shouwang</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- broker + kafka.tools.StorageTool -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- admin CLIs (TopicCommand, ...); Connect runtime is not needed and is large -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>
    </dependency>
    <!-- Kafka 4 logs through slf4j 1.x; without a binding it would log nothing at all -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
}

install_kafka() {
  [[ -f $KAFKA_HOME/.complete ]] && return 0
  log "downloading Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_HOME/libs"
  mkdir -p "$KAFKA_HOME"
  kafka_pom >"$KAFKA_HOME/pom.xml"
  rm -rf "$KAFKA_HOME/libs.tmp"
  # Copy into a temp dir and rename, so an interrupted download never looks complete.
  mvn -B -q -Dstyle.color=never -f "$KAFKA_HOME/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs.tmp" >"$KAFKA_HOME/mvn.log" 2>&1 \
    || { tail -n 30 "$KAFKA_HOME/mvn.log" >&2; die "mvn could not resolve Kafka $KAFKA_VERSION"; }
  rm -rf "$KAFKA_HOME/libs"
  mv "$KAFKA_HOME/libs.tmp" "$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
}

installed() {
  [[ -n $(pg_bin) ]] && command -v psql >/dev/null && command -v mosquitto_pub >/dev/null \
    && { [[ -x /usr/sbin/mosquitto ]] || command -v mosquitto >/dev/null; } \
    && java_ok && [[ -f $KAFKA_HOME/.complete ]] && command -v espeak-ng >/dev/null
}

cmd_install() {
  install_packages
  install_kafka
  log "install ok (postgres: $(pg_bin), kafka: $KAFKA_VERSION)"
}

# ---------- PostgreSQL ----------

# The server refuses to run as root, so the cluster belongs to `postgres`.
as_pg() { if (( EUID == 0 )); then runuser -u postgres -- "$@"; else "$@"; fi; }

# `postgres` must be able to reach the data dir; under e.g. /root (mode 700) it cannot,
# so fall back to a stable per-checkout dir in /var/tmp.
pg_root() {
  if (( EUID != 0 )) || runuser -u postgres -- test -x "$DIR"; then
    echo "$DIR/pg"
  else
    echo "/var/tmp/shouwang-pg-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"
  fi
}

PG_ROOT=
pg_paths() {
  [[ -n $PG_ROOT ]] && return 0
  mkdir -p "$DIR"
  PG_ROOT=$(pg_root)
  PGDATA_DIR=$PG_ROOT/data
  PG_SOCK=$PG_ROOT/run
  PG_LOG=$PG_ROOT/postgres.log
}

pg_running() {
  pg_paths
  [[ -f $PGDATA_DIR/PG_VERSION ]] || return 1
  as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

pg_init() {
  [[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
  log "initdb $PGDATA_DIR"
  mkdir -p "$PG_ROOT"
  rm -rf "$PGDATA_DIR"
  if (( EUID == 0 )); then chown postgres:postgres "$PG_ROOT"; fi
  as_pg "$(pg_bin)/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$PG_ROOT/initdb.log" 2>&1 \
    || fail_start postgres "$PG_ROOT/initdb.log"
  as_pg sh -c "echo \"include_if_exists = 'shouwang.conf'\" >> '$PGDATA_DIR/postgresql.conf'"
}

pg_write_conf() {
  as_pg mkdir -p "$PG_SOCK"
  # Rewritten every start so port changes take effect. fsync stays on: tests check durability.
  as_pg tee "$PGDATA_DIR/shouwang.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 256MB
fsync = on
logging_collector = off
EOF
}

pg_psql() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" "$@"; }

pg_bootstrap() {
  # Superuser so tests can create schemas and extensions.
  if [[ -z $(pg_psql -U postgres -d postgres -tAc "select 1 from pg_roles where rolname = 'shouwang'") ]]; then
    pg_psql -U postgres -d postgres -c 'create role shouwang login superuser'
  fi
  if [[ -z $(pg_psql -U postgres -d postgres -tAc "select 1 from pg_database where datname = 'shouwang'") ]]; then
    pg_psql -U postgres -d postgres -c 'create database shouwang owner shouwang'
  fi
}

pg_start() {
  pg_paths
  pg_init
  pg_write_conf
  if pg_running; then
    log "postgres already running"
  else
    port_open "$PG_PORT" && die "postgres: port $PG_PORT is already in use by another process"
    log "starting postgres on 127.0.0.1:$PG_PORT"
    as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -l "$PG_LOG" -w -t "$START_TIMEOUT" start >/dev/null 9>&- \
      || fail_start postgres "$PG_LOG"
  fi
  pg_bootstrap || fail_start postgres "$PG_LOG"
  pg_psql -U shouwang -d shouwang -tAc 'select 1' >/dev/null || fail_start postgres "$PG_LOG"
  log "postgres ready"
}

pg_stop() {
  pg_paths
  pg_running || return 0
  log "stopping postgres"
  as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null \
    || as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m immediate -w -t 30 stop >/dev/null
}

# ---------- Mosquitto ----------

mosquitto_bin() { command -v mosquitto 2>/dev/null || echo /usr/sbin/mosquitto; }

# Queue/packet tuning comes from the committed production config so both stay identical;
# listener, auth, paths and logging are local to the test broker.
mqtt_shared_settings() {
  [[ -f $MOSQUITTO_PROD_CONF ]] || die "missing $MOSQUITTO_PROD_CONF"
  grep -E '^[[:space:]]*(persistence|autosave_interval|max_queued_messages|max_queued_bytes|max_inflight_messages|max_inflight_bytes|max_packet_size|message_size_limit|queue_qos0_messages|set_tcp_nodelay|max_keepalive)[[:space:]]' \
    "$MOSQUITTO_PROD_CONF"
}

# Test accounts for the authenticated listener, in the format `shouwang devices provision`
# writes: "user password site" per line in auth/credentials (site "-" for services).
# Random passwords, made once per services dir so a running broker and its files agree.
MQTT_TEST_ACCOUNTS="test-ingest:- test-dev-a1:test-site-a test-dev-a2:test-site-a test-dev-b1:test-site-b"
mqtt_write_auth() {
  local auth=$MQTT_DIR/auth account user pass site
  [[ -s $auth/credentials && -s $auth/passwd && -s $auth/acl ]] && return 0
  mkdir -p "$auth"
  chmod 700 "$auth"
  rm -f "$auth/passwd" "$auth/credentials.tmp"
  {
    echo "# generated by scripts/services.sh for the authenticated test listener"
    echo
    echo "# ingest"
    echo "user test-ingest"
    echo "topic read shouwang/v1/#"
  } >"$auth/acl.tmp"
  for account in $MQTT_TEST_ACCOUNTS; do
    user=${account%%:*} site=${account#*:}
    pass=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
    touch "$auth/passwd"
    mosquitto_passwd -b "$auth/passwd" "$user" "$pass" >/dev/null 2>&1 \
      || die "mosquitto_passwd failed for $user"
    echo "$user $pass $site" >>"$auth/credentials.tmp"
    [[ $site == - ]] && continue
    {
      echo
      echo "# device on site $site"
      echo "user $user"
      echo "topic write shouwang/v1/$site/$user/telemetry"
      echo "topic write shouwang/v1/$site/$user/event"
      echo "topic write shouwang/v1/$site/$user/status"
    } >>"$auth/acl.tmp"
  done
  chmod 600 "$auth/passwd" "$auth/acl.tmp" "$auth/credentials.tmp"
  mv "$auth/acl.tmp" "$auth/acl"
  mv "$auth/credentials.tmp" "$auth/credentials"
}

mqtt_write_conf() {
  mkdir -p "$MQTT_DIR/data"
  mqtt_write_auth
  {
    echo "# generated by scripts/services.sh; edit config/mosquitto/mosquitto.conf for shared settings"
    # Anonymous listener for most tests, authenticated one for the security tests.
    echo "per_listener_settings true"
    mqtt_shared_settings
    # Run as the invoking user (root in CI) so the broker can always reach $DIR.
    echo "user $(id -un)"
    echo "pid_file $MQTT_DIR/mosquitto.pid"
    echo "persistence_location $MQTT_DIR/data/"
    echo "log_dest file $MQTT_DIR/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    echo "connection_messages true"
    echo "listener $MQTT_PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "listener $MQTT_AUTH_PORT 127.0.0.1"
    echo "allow_anonymous false"
    echo "password_file $MQTT_DIR/auth/passwd"
    echo "acl_file $MQTT_DIR/auth/acl"
  } >"$MQTT_DIR/mosquitto.conf"
}

mqtt_running() { pid_alive "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.conf"; }

# Real round trip: a retained message is published, read back, then cleared.
mqtt_roundtrip() {
  local topic="shouwang/selftest/$$" got
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -t "$topic" -m ok 2>/dev/null || return 1
  got=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t "$topic" -C 1 -W 5 2>/dev/null) || got=
  mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -r -n -t "$topic" 2>/dev/null || true
  [[ $got == ok ]]
}

mqtt_start() {
  mqtt_write_conf
  if mqtt_running; then
    log "mosquitto already running"
  else
    rm -f "$MQTT_DIR/mosquitto.pid"
    port_open "$MQTT_PORT" && die "mosquitto: port $MQTT_PORT is already in use by another process"
    port_open "$MQTT_AUTH_PORT" && die "mosquitto: port $MQTT_AUTH_PORT is already in use by another process"
    log "starting mosquitto on 127.0.0.1:$MQTT_PORT"
    # stderr only carries the "running as root" warning; keep it in the log.
    "$(mosquitto_bin)" -c "$MQTT_DIR/mosquitto.conf" -d 9>&- 2>>"$MQTT_DIR/mosquitto.log" || fail_start mosquitto "$MQTT_DIR/mosquitto.log"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until mqtt_roundtrip; do
    deadline_passed "$deadline" && fail_start mosquitto "$MQTT_DIR/mosquitto.log"
    sleep 0.2
  done
  mqtt_running || fail_start mosquitto "$MQTT_DIR/mosquitto.log"
  # A broker started before the authenticated listener existed keeps running without it;
  # the security tests then fail (never skip) until `services.sh restart`.
  port_open "$MQTT_AUTH_PORT" \
    || log "WARNING: no authenticated listener on $MQTT_AUTH_PORT; run: $0 restart"
  log "mosquitto ready"
}

mqtt_stop() { kill_pidfile mosquitto "$MQTT_DIR/mosquitto.pid" "$MQTT_DIR/mosquitto.conf"; }

# ---------- Kafka ----------

kafka_java() { # main class + args, quiet tool logging to stderr
  java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-tools.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_write_conf() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  # Static voter list (not --standalone) so a changed port needs no re-format.
  cat >"$KAFKA_DIR/server.properties" <<EOF
# generated by scripts/services.sh
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DIR/data
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
# fewer internal partitions: the first consumer group comes up much faster
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  # Broker logs go to a file, never to our stdout.
  cat >"$KAFKA_DIR/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $KAFKA_DIR/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
  cat >"$KAFKA_DIR/log4j2-tools.properties" <<EOF
status = error
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
}

kafka_format() {
  [[ -f $KAFKA_DIR/data/meta.properties ]] && return 0
  [[ -s $KAFKA_DIR/cluster-id ]] || kafka_java kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster-id"
  log "formatting kafka storage (cluster $(<"$KAFKA_DIR/cluster-id"))"
  kafka_java kafka.tools.StorageTool format --ignore-formatted \
    -t "$(<"$KAFKA_DIR/cluster-id")" -c "$KAFKA_DIR/server.properties" >"$KAFKA_DIR/logs/format.log" 2>&1 \
    || fail_start kafka "$KAFKA_DIR/logs/format.log"
}

kafka_running() { pid_alive "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"; }

kafka_ready() {
  timeout 30 java -Xmx128m -XX:TieredStopAtLevel=1 -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2-tools.properties" \
    -cp "$KAFKA_HOME/libs/*" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1
}

kafka_start() {
  kafka_write_conf
  kafka_format
  if kafka_running; then
    log "kafka already running"
  else
    rm -f "$KAFKA_DIR/kafka.pid"
    port_open "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is already in use by another process"
    port_open "$KAFKA_CONTROLLER_PORT" && die "kafka: port $KAFKA_CONTROLLER_PORT is already in use by another process"
    log "starting kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
    # stdout only catches JVM-level failures; normal logging goes to logs/server.log.
    # Log4j's own shutdown hook would cut off the broker's shutdown logging, so it is off.
    nohup java -Xmx512m -Xms512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
      -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR/logs" \
      -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
      -Dlog4j2.shutdownHookEnabled=false \
      -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
      </dev/null >"$KAFKA_DIR/logs/stdout.log" 2>&1 9>&- &
    echo $! >"$KAFKA_DIR/kafka.pid"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$KAFKA_PORT" && kafka_ready; do
    pid_started "$KAFKA_DIR/kafka.pid" || fail_start kafka "$KAFKA_DIR/logs/server.log"
    deadline_passed "$deadline" && fail_start kafka "$KAFKA_DIR/logs/server.log"
    sleep 0.5
  done
  kafka_running || fail_start kafka "$KAFKA_DIR/logs/server.log"
  log "kafka ready"
}

kafka_stop() { kill_pidfile kafka "$KAFKA_DIR/kafka.pid" "$KAFKA_DIR/server.properties"; }

# ---------- commands ----------

write_env() {
  cat >"$DIR/env.tmp" <<EOF
SHOUWANG_TEST_PG_DSN=postgresql://shouwang@127.0.0.1:$PG_PORT/shouwang
SHOUWANG_TEST_MQTT=127.0.0.1:$MQTT_PORT
SHOUWANG_TEST_MQTT_AUTH=127.0.0.1:$MQTT_AUTH_PORT
SHOUWANG_TEST_MQTT_AUTH_CREDENTIALS=$MQTT_DIR/auth/credentials
SHOUWANG_TEST_KAFKA=127.0.0.1:$KAFKA_PORT
EOF
  mv "$DIR/env.tmp" "$DIR/env"
}

# One start/stop at a time per services dir. Daemons are spawned with `9>&-`
# so they never inherit (and hold forever) this lock.
lock() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another services.sh holds $DIR/.lock"
}

cmd_start() {
  installed || cmd_install
  lock
  local t0=$SECONDS
  pg_start
  mqtt_start
  kafka_start
  write_env
  log "all services ready in $((SECONDS - t0))s; env written to $DIR/env"
}

cmd_stop() {
  lock
  rm -f "$DIR/env"
  kafka_stop
  mqtt_stop
  pg_stop
  log "all services stopped"
}

cmd_status() {
  local rc=0 state
  if pg_running; then state=running; else state=stopped; rc=3; fi
  printf '%-10s %-8s 127.0.0.1:%s\n' postgres "$state" "$PG_PORT"
  if mqtt_running; then state=running; else state=stopped; rc=3; fi
  printf '%-10s %-8s 127.0.0.1:%s\n' mosquitto "$state" "$MQTT_PORT"
  if kafka_running; then state=running; else state=stopped; rc=3; fi
  printf '%-10s %-8s 127.0.0.1:%s\n' kafka "$state" "$KAFKA_PORT"
  return "$rc"
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  kafka-tool)
    shift
    [[ -f $KAFKA_HOME/.complete ]] || die "kafka not installed; run: $0 install"
    [[ -f $KAFKA_DIR/log4j2-tools.properties ]] || kafka_write_conf
    kafka_java "$@" ;;
  *) echo "usage: $0 install|start|stop|restart|status|kafka-tool <MainClass> [args]" >&2; exit 2 ;;
esac
