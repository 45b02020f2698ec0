// `berth secret ...`: crypt's sealed configuration, done on the operator's machine. Values are
// sealed and opened here with the operator's key (--key, BERTH_SECRET_KEY, or
// ~/.config/berth/secret.key; a locked key reads BERTH_SECRET_PASSPHRASE): the agent's API
// only ever carries sealed values (api/secret_api.h). cli.cc adds them with one line:
//   AddSecretCommands(app, g.api, rc);
// Thread-safety: called once, from main, while building the command line.
#pragma once

#include <string>

#include "cli/api_client.h"

namespace CLI {
class App;
}

namespace berth::cli {

// Adds `secret keygen|set|get|ls|rm|recipients|rotate` to `app`; `api` is read when a command
// runs; the exit code is left in `rc`.
void AddSecretCommands(CLI::App& app, const ApiClientOptions& api, int& rc);

// Where the operator's key is by default: $BERTH_SECRET_KEY, else
// $XDG_CONFIG_HOME/berth/secret.key, else ~/.config/berth/secret.key.
std::string DefaultSecretKeyPath();

}  // namespace berth::cli
