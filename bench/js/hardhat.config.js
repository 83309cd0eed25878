// Hardhat Network as the benchmark's single-node peer. python -m bench writes the chain settings
// (chain id, funded accounts, gas limit, mining mode) to a JSON file and names it in
// MEDLEDGER_BENCH_HARDHAT, so Hardhat, Ganache and medledger run with the same accounts.
const fs = require("fs");

const file = process.env.MEDLEDGER_BENCH_HARDHAT;
if (!file) {
  throw new Error("MEDLEDGER_BENCH_HARDHAT must name the settings file written by python -m bench");
}
const settings = JSON.parse(fs.readFileSync(file, "utf8"));

module.exports = {
  paths: { cache: settings.workdir + "/cache", artifacts: settings.workdir + "/artifacts",
           sources: settings.workdir + "/contracts" },
  networks: {
    hardhat: {
      chainId: settings.chainId,
      hardfork: settings.hardfork,
      blockGasLimit: settings.blockGasLimit,
      initialBaseFeePerGas: settings.initialBaseFeePerGas,
      accounts: settings.accounts.map((a) => ({ privateKey: a.privateKey, balance: a.balance })),
      mining: settings.intervalMs > 0
        ? { auto: false, interval: settings.intervalMs, mempool: { order: "fifo" } }
        : { auto: true },
      loggingEnabled: false,
    },
  },
};
