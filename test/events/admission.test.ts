import { expect } from 'chai';
import { AdmissionGate } from '../../src/actors/admission.ts';

/** Settles `p` or reports that it is still pending after the microtasks and timers due now have run. */
async function settledNow(p: Promise<void>): Promise<boolean> {
  let settled = false;
  void p.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

/**
 * The gate that holds new commands while the replica's event batches run late (pure: no database;
 * the reader's side, which reports how late its batches ran, is in partition-reader.test.ts).
 */
describe('admission: new commands wait while event batches run late', () => {
  it('lets commands through at once while the batches are within the budget, and before any batch reported', () => {
    const gate = new AdmissionGate(100, 250);
    expect(gate.admit(), 'before any batch').to.equal(undefined);
    gate.note(100);
    expect(gate.holding).to.equal(false);
    expect(gate.admit(), 'at the budget').to.equal(undefined);
  });

  it('holds commands after a late batch until a batch within the budget, and reports how long each waited', async () => {
    const waited: number[] = [];
    const gate = new AdmissionGate(100, 60_000, (s) => waited.push(s));
    gate.note(101);
    expect(gate.holding).to.equal(true);
    const first = gate.admit();
    const second = gate.admit();
    expect(first, 'a promise while late').to.be.instanceOf(Promise);
    expect(await settledNow(first!), 'held').to.equal(false);
    gate.note(400);
    expect(await settledNow(first!), 'still held after another late batch').to.equal(false);
    gate.note(30);
    expect(await settledNow(first!), 'released by a batch within the budget').to.equal(true);
    expect(await settledNow(second!)).to.equal(true);
    expect(waited).to.have.length(2);
    for (const s of waited) expect(s).to.be.within(0, 60);
    expect(gate.admit(), 'and later commands go on at once').to.equal(undefined);
  });

  it('releases held commands when the owner has nothing left to read (a report of 0)', async () => {
    const gate = new AdmissionGate(50, 60_000);
    gate.note(5000);
    const held = gate.admit()!;
    expect(await settledNow(held)).to.equal(false);
    gate.note(0);
    expect(await settledNow(held)).to.equal(true);
  });

  it('never holds a command longer than the longest wait, however late the batches stay', async () => {
    const waited: number[] = [];
    const gate = new AdmissionGate(100, 80, (s) => waited.push(s));
    gate.note(10_000);
    const started = performance.now();
    let deadline: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        gate.admit(),
        new Promise((_, reject) => {
          deadline = setTimeout(() => reject(new Error('still held 2 s later')), 2000);
        }),
      ]);
    } finally {
      clearTimeout(deadline);
    }
    const ms = performance.now() - started;
    expect(ms, 'went on after its longest wait').to.be.at.least(75);
    expect(waited[0]! * 1000).to.be.at.least(75);
    expect(gate.holding, 'the batches are still late').to.equal(true);
    expect(gate.admit(), 'so the next command waits again').to.be.instanceOf(Promise);
    gate.release();
  });

  it('never holds with a budget of 0', () => {
    const gate = new AdmissionGate(0, 250);
    gate.note(60_000);
    expect(gate.holding).to.equal(false);
    expect(gate.admit()).to.equal(undefined);
  });

  it('lets every held command go on close (shutdown), and holds none after it however late the batches', async () => {
    const gate = new AdmissionGate(10, 60_000);
    gate.note(20);
    const held = [gate.admit()!, gate.admit()!, gate.admit()!];
    gate.close();
    for (const h of held) expect(await settledNow(h)).to.equal(true);
    gate.note(5000);
    expect(gate.holding).to.equal(false);
    expect(gate.admit()).to.equal(undefined);
  });
});
