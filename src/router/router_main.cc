// berth-router: `berth router` as a binary of its own, for the benchmarks and for trying the
// router before the berth binary carries the subcommand. Same flags: berth-router router ...
#include <CLI/CLI.hpp>

#include "router/router_cli.h"

int main(int argc, char** argv) {
  CLI::App app{"berth router, standalone", "berth-router"};
  app.require_subcommand(1);
  int rc = 0;
  berth::router::AddRouterCommand(app, rc);
  CLI11_PARSE(app, argc, argv);
  return rc;
}
