/**
 * `{ ...base, ...more }` for objects made on the hot paths, where `more` adds properties `base`
 * does not have.
 *
 * V8 (as in Node 20) gives an object made by spreading another (`{ ...base }`) a hidden class
 * (map) of its own, outside the tree of map transitions; each property then added to it, in the
 * same literal (`{ ...base, extra }`) or later, makes a new map for that one object. So every such
 * object carries a map and descriptors of its own, allocated straight into the old generation
 * (only a major collection frees them), and the code that reads these objects sees a new map
 * each time. At a replica's pace the event batches' history events alone were a quarter of what
 * its old generation took in; without such maps a replica promotes about 60 % less per scavenge
 * (docs/benchmarks.md, 2026-12-07 17:04). `Object.assign` onto a new empty object takes the maps'
 * usual transitions, shared by every object of the same shape. Overriding properties `base`
 * already has (`{ ...state, status }`) keeps its map and needs none of this.
 * test/ops/hidden-classes.test.ts checks the objects the hot paths build.
 */
export function withFields<A extends object, B extends object>(base: A, more: B): Omit<A, keyof B> & B {
  return Object.assign({}, base, more);
}
