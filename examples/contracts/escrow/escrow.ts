// Example contract: an escrow for a cross-border payment between two organisations, in
// AssemblyScript on the consortium SDK. Built by `make contracts` into wasm/escrow.wasm.
//
// The payer (an account of one organisation) locks an amount of its balance for a payee (an
// account of another); the payment is released to the payee once BOTH parties approved it,
// or refunded to the payer from the deadline height on. The ABI has no cross-contract calls,
// so the amounts are the escrow's own internal balances (settlement accounts prefunded at
// init, as nostro accounts are), not another contract's token.
//
// Accounts are 32-byte Ed25519 public keys; integers are u64 little-endian.
// Inputs:
//   init        (account:32 amount:u64)*                    opening internal balances
//   open        id:u64 payee:32 amount:u64 deadline:u64     caller = payer; locks amount
//   approve     id:u64                                      caller = payer or payee
//   refund      id:u64                                      anyone, at height >= deadline
//   balance_of  account:32                                  result: u64
//   escrow      id:u64                                      result: the record (below)
// Record: payer:32 payee:32 amount:u64 deadline:u64 state:u8 approvals:u8
//   state 0 open, 1 released, 2 refunded; approvals bit 0 = payer, bit 1 = payee.
// Events: "opened" id payer payee amount deadline; "approved" id approver;
//         "released" id payee amount; "refunded" id payer amount.
import {
  abort, caller, concat, emit, equal, get, getU64, height, input, key, put, putU64,
  readAddress, readU64, require, setResult, u64Bytes, ADDRESS_LEN,
} from "../sdk/assemblyscript/consortium";

const RECORD_LEN: i32 = 2 * ADDRESS_LEN + 8 + 8 + 2;
const OPEN: u8 = 0;
const RELEASED: u8 = 1;
const REFUNDED: u8 = 2;
const BY_PAYER: u8 = 1;
const BY_PAYEE: u8 = 2;

function balanceKey(account: Uint8Array): Uint8Array {
  return key("b", [account]);
}

function escrowKey(id: u64): Uint8Array {
  return key("e", [u64Bytes(id)]);
}

function credit(account: Uint8Array, amount: u64): void {
  const k = balanceKey(account);
  const before = getU64(k);
  require(before <= U64.MAX_VALUE - amount, "balance overflow");
  putU64(k, before + amount);
}

/** The open record of escrow `id` (aborts if unknown or already settled). */
function openRecord(id: u64): Uint8Array {
  const rec = get(escrowKey(id));
  if (rec === null) {
    abort("unknown escrow " + id.toString());
    return new Uint8Array(0);
  }
  require(rec.length == RECORD_LEN, "corrupt escrow record");
  require(rec[80] == OPEN, "escrow " + id.toString() + " is already settled");
  return rec;
}

function idOnly(what: string): u64 {
  const args = input();
  require(args.length == 8, what + ": expected id:u64");
  return readU64(args, 0);
}

export function init(): void {
  const args = input();
  const entry = ADDRESS_LEN + 8;
  require(args.length % entry == 0, "init: expected (account:32 amount:u64)*");
  for (let at = 0; at < args.length; at += entry) {
    credit(readAddress(args, at), readU64(args, at + ADDRESS_LEN));
  }
}

export function open(): void {
  const args = input();
  require(args.length == 8 + ADDRESS_LEN + 16, "open: expected id:u64 payee:32 amount:u64 deadline:u64");
  const id = readU64(args, 0);
  const payee = readAddress(args, 8);
  const amount = readU64(args, 8 + ADDRESS_LEN);
  const deadline = readU64(args, 16 + ADDRESS_LEN);
  const payer = caller();
  require(get(escrowKey(id)) === null, "escrow " + id.toString() + " exists");
  require(amount > 0, "amount must be positive");
  require(deadline > height(), "deadline must be above the current height");
  require(!equal(payer, payee), "payer and payee must differ");
  const k = balanceKey(payer);
  const balance = getU64(k);
  require(balance >= amount, "insufficient balance");
  putU64(k, balance - amount);
  const rec = new Uint8Array(RECORD_LEN);
  rec.set(payer, 0);
  rec.set(payee, ADDRESS_LEN);
  rec.set(u64Bytes(amount), 2 * ADDRESS_LEN);
  rec.set(u64Bytes(deadline), 2 * ADDRESS_LEN + 8);
  put(escrowKey(id), rec);
  emit("opened", concat([u64Bytes(id), payer, payee, u64Bytes(amount), u64Bytes(deadline)]));
}

export function approve(): void {
  const id = idOnly("approve");
  const rec = openRecord(id);
  const who = caller();
  const payer = rec.slice(0, ADDRESS_LEN);
  const payee = rec.slice(ADDRESS_LEN, 2 * ADDRESS_LEN);
  require(height() < readU64(rec, 2 * ADDRESS_LEN + 8), "deadline passed: the escrow can only be refunded");
  let bit: u8 = 0;
  if (equal(who, payer)) bit = BY_PAYER;
  else if (equal(who, payee)) bit = BY_PAYEE;
  else abort("only the payer or the payee may approve");
  require((rec[81] & bit) == 0, "already approved");
  rec[81] = rec[81] | bit;
  emit("approved", concat([u64Bytes(id), who]));
  if (rec[81] == (BY_PAYER | BY_PAYEE)) {
    const amount = readU64(rec, 2 * ADDRESS_LEN);
    rec[80] = RELEASED;
    credit(payee, amount);
    emit("released", concat([u64Bytes(id), payee, u64Bytes(amount)]));
  }
  put(escrowKey(id), rec);
}

export function refund(): void {
  const id = idOnly("refund");
  const rec = openRecord(id);
  const deadline = readU64(rec, 2 * ADDRESS_LEN + 8);
  require(height() >= deadline, "refund: the deadline (height " + deadline.toString() + ") is not reached");
  const payer = rec.slice(0, ADDRESS_LEN);
  const amount = readU64(rec, 2 * ADDRESS_LEN);
  rec[80] = REFUNDED;
  credit(payer, amount);
  put(escrowKey(id), rec);
  emit("refunded", concat([u64Bytes(id), payer, u64Bytes(amount)]));
}

export function balance_of(): void {
  const args = input();
  require(args.length == ADDRESS_LEN, "balance_of: expected account:32");
  setResult(u64Bytes(getU64(balanceKey(args))));
}

export function escrow(): void {
  const rec = get(escrowKey(idOnly("escrow")));
  require(rec !== null, "unknown escrow");
  setResult(rec!);
}
