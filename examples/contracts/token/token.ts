// Example contract: a fungible token with allowances (ERC-20's shape), in AssemblyScript on
// the consortium SDK. Built by `make contracts` into wasm/token.wasm.
//
// Accounts are 32-byte Ed25519 public keys; amounts are u64, little-endian on the wire.
// Inputs (fixed layouts, concatenated):
//   init          supply:u64                  mints `supply` to the deployer (the caller), or
//                 holder:32 supply:u64        mints it to `holder`
//   transfer      to:32 amount:u64            caller -> to
//   approve       spender:32 amount:u64       caller lets spender move up to amount (replaces)
//   transfer_from from:32 to:32 amount:u64    caller (a spender) moves from -> to
//   balance_of    owner:32                    result: u64
//   allowance     owner:32 spender:32         result: u64
//   total_supply  (none)                      result: u64
// Events: "transfer" from:32 to:32 amount:u64 (from = 32 zero bytes at the mint),
//         "approval" owner:32 spender:32 amount:u64.
// State: "b"+owner -> u64, "a"+owner+spender -> u64, "s" -> total supply; zero values are
// removed, so the state holds only non-zero balances and allowances.
import {
  abort, caller, concat, emit, getU64, input, key, putU64, readAddress, readU64, require,
  setResult, u64Bytes, ADDRESS_LEN,
} from "../sdk/assemblyscript/consortium";

function balanceKey(owner: Uint8Array): Uint8Array {
  return key("b", [owner]);
}

function allowanceKey(owner: Uint8Array, spender: Uint8Array): Uint8Array {
  return key("a", [owner, spender]);
}

function move(from: Uint8Array, to: Uint8Array, amount: u64): void {
  const fromKey = balanceKey(from);
  const fromBalance = getU64(fromKey);
  require(fromBalance >= amount, "insufficient balance");
  // Debit first, then read the credit: a transfer to oneself leaves the balance unchanged.
  putU64(fromKey, fromBalance - amount);
  const toKey = balanceKey(to);
  const toBalance = getU64(toKey);
  // Cannot overflow: the sum of all balances is the total supply, a u64.
  putU64(toKey, toBalance + amount);
  emit("transfer", concat([from, to, u64Bytes(amount)]));
}

export function init(): void {
  const args = input();
  let holder: Uint8Array;
  let supply: u64;
  if (args.length == 8) {
    holder = caller();
    supply = readU64(args, 0, "init");
  } else if (args.length == ADDRESS_LEN + 8) {
    holder = readAddress(args, 0, "init");
    supply = readU64(args, ADDRESS_LEN, "init");
  } else {
    abort("init: expected supply:u64 or holder:32 supply:u64");
    return;
  }
  putU64(key("s", []), supply);
  putU64(balanceKey(holder), supply);
  emit("transfer", concat([new Uint8Array(ADDRESS_LEN), holder, u64Bytes(supply)]));
}

export function transfer(): void {
  const args = input();
  require(args.length == ADDRESS_LEN + 8, "transfer: expected to:32 amount:u64");
  move(caller(), readAddress(args, 0), readU64(args, ADDRESS_LEN));
}

export function approve(): void {
  const args = input();
  require(args.length == ADDRESS_LEN + 8, "approve: expected spender:32 amount:u64");
  const owner = caller();
  const spender = readAddress(args, 0);
  const amount = readU64(args, ADDRESS_LEN);
  putU64(allowanceKey(owner, spender), amount);
  emit("approval", concat([owner, spender, u64Bytes(amount)]));
}

export function transfer_from(): void {
  const args = input();
  require(args.length == 2 * ADDRESS_LEN + 8, "transfer_from: expected from:32 to:32 amount:u64");
  const from = readAddress(args, 0);
  const to = readAddress(args, ADDRESS_LEN);
  const amount = readU64(args, 2 * ADDRESS_LEN);
  const allowed = allowanceKey(from, caller());
  const left = getU64(allowed);
  require(left >= amount, "allowance exceeded");
  putU64(allowed, left - amount);
  move(from, to, amount);
}

export function balance_of(): void {
  const args = input();
  require(args.length == ADDRESS_LEN, "balance_of: expected owner:32");
  setResult(u64Bytes(getU64(balanceKey(args))));
}

export function allowance(): void {
  const args = input();
  require(args.length == 2 * ADDRESS_LEN, "allowance: expected owner:32 spender:32");
  setResult(u64Bytes(getU64(allowanceKey(readAddress(args, 0), readAddress(args, ADDRESS_LEN)))));
}

export function total_supply(): void {
  setResult(u64Bytes(getU64(key("s", []))));
}
