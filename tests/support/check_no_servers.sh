#!/bin/sh
# The unit tests start no server and no long-lived process: a test that needs a real provider on loopback,
# tayori-sim, an SMTP server or a socket of its own is an integration test (tests/integration, which mirrors
# unit/'s folders). This check, a CTest test, fails naming every line of tests/unit that starts one, by the
# helpers that do (tests/support/plugin_test_support.hpp's ScriptedProvider, sim_process.hpp's SimProcess,
# smtp_server.hpp's SmtpServer, child_process.hpp's ChildProcess, an api::HttpServer, smtp_server.py) and by the
# socket calls themselves. Short-lived tools that compute an answer (openssl making a key, Python's email
# parser, nm) are not servers and stay allowed.
#
# Usage: check_no_servers.sh <tests/unit folder>
# pg_*_test.cpp are left out: they run against a real PostgreSQL cluster by design (pg_unit_tests, label
# postgres), the same store tests on the second engine.
dir=${1:?usage: check_no_servers.sh <tests/unit folder>}
offenders=$(grep -rnE 'ScriptedProvider|SimProcess|ChildProcess|SmtpServer|HttpServer|smtp_server\.py|::(socket|bind|listen|accept|connect)[[:space:]]*\(' \
  "$dir" --include='*.cpp' --include='*.hpp' --include='*.h' --exclude='pg_*_test.cpp')
if [ -n "$offenders" ]; then
  echo "Unit tests must not start servers or open sockets (a test that needs a real server or process belongs"
  echo "in tests/integration, in the folder that mirrors its unit/ one). Offenders:"
  echo "$offenders"
  exit 1
fi
echo "No servers in $dir"
