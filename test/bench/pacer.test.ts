import { expect } from 'chai';
import { Pacer } from '../../scripts/load/pacer.ts';

/** The load generator's --rate: slots a fixed interval apart, never a burst to make up for lost ones. */
describe('load pacer', () => {
  it('gives callers waiting at once consecutive slots 1/rate apart', () => {
    let now = 1000;
    const pacer = new Pacer(50, () => now);
    expect([pacer.book(), pacer.book(), pacer.book(), pacer.book()]).to.deep.equal([0, 20, 40, 60]);
    now += 30; // 30 ms later the next free slot is at +80
    expect(pacer.book()).to.equal(50);
  });

  it('does not make up slots nobody used: after a quiet spell the next caller starts at once, then the pace resumes', () => {
    let now = 0;
    const pacer = new Pacer(10, () => now);
    expect(pacer.book()).to.equal(0);
    now = 5000;
    expect([pacer.book(), pacer.book(), pacer.book()]).to.deep.equal([0, 100, 200]);
  });

  it('refuses a rate that is not a positive number', () => {
    for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => new Pacer(bad)).to.throw(RangeError, /positive number/);
  });
});
