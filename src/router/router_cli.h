// `berth router`: the subcommand and its flags. cli.cc adds it with one line:
//   router::AddRouterCommand(app, rc);
// Thread-safety: called once, from main, while building the command line.
#pragma once

namespace CLI {
class App;
}

namespace berth::router {

// Adds `router` to `app`; when it runs, it opens the store and serves until SIGINT/SIGTERM,
// leaving its exit code in `rc`.
void AddRouterCommand(CLI::App& app, int& rc);

}  // namespace berth::router
