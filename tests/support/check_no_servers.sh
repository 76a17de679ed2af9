#!/bin/sh
# The unit tests start no server and no process: a test that needs a real provider on loopback, tayori-sim,
# an SMTP server, a socket of its own or any program run beside it (openssl, Python's email parser, nm) is an
# integration test (tests/integration, which mirrors unit/'s folders). This check, a CTest test, fails naming
# every line of tests/unit that starts one, by the helpers that do (tests/support/plugin_test_support.hpp's
# ScriptedProvider, sim_process.hpp's SimProcess, smtp_server.hpp's SmtpServer, child_process.hpp's
# ChildProcess, an api::HttpServer, smtp_server.py, email_test_support.hpp's parse_with_python), by the socket
# calls themselves, and by the calls that run a program (popen, fork, posix_spawn, the exec family, system).
#
# The same grep-and-name shape as check_no_sleeps.sh, kept a script of its own: each rule is its own CTest test,
# so a failure says which rule broke.
#
# Usage: check_no_servers.sh <tests/unit folder>
dir=${1:?usage: check_no_servers.sh <tests/unit folder>}
servers='ScriptedProvider|SimProcess|ChildProcess|SmtpServer|HttpServer|smtp_server\.py|parse_with_python'
sockets='::(socket|bind|listen|accept|connect)[[:space:]]*\('
programs='(^|[^[:alnum:]_])(popen|v?fork|posix_spawnp?|exec(l|lp|le|v|vp|vpe)|system)[[:space:]]*\('
offenders=$(grep -rnE "$servers|$sockets|$programs" "$dir" --include='*.cpp' --include='*.hpp' --include='*.h')
if [ -n "$offenders" ]; then
  echo "Unit tests must not start servers or processes or open sockets (a test that needs a real server or"
  echo "process belongs in tests/integration, in the folder that mirrors its unit/ one). Offenders:"
  echo "$offenders"
  exit 1
fi
echo "No servers in $dir"
