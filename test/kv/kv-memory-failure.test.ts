/**
 * A poisoned block under a record: get/getView/range of the keys stored there throw EIO
 * (never bytes), other keys keep working, and overwriting or deleting the key clears it
 * (its new record lives elsewhere). Not covered: poison found during recovery (the scan of
 * that segment stops there and reports poisonedSegments).
 */
import { describe, expect, it } from 'vitest';
import { createSimMedia } from '../../src/device/sim-media.js';
import { openMedia } from '../helpers/kv-bytes.js';
import { daxCodeOf } from '../helpers/expect-code.js';

const td = new TextDecoder();

describe('kv memory failure', () => {
  it('a poisoned record is EIO for its key only; overwrite and delete clear it', () => {
    const db = openMedia(createSimMedia(8 * 2 ** 20));
    db.put('victim', new Uint8Array(5000).fill(1)); // spans two blocks of the segment
    db.put('padding', new Uint8Array(8000)); // pushes the neighbour two blocks further
    db.put('neighbour', 'fine');
    const offset = db.dax.tree.lookup(Uint8Array.of(1, ...Buffer.from('victim')))!;
    const device = db.dax.device;
    device.poison(device.blockAt(offset + 4200));
    const code = daxCodeOf;
    expect(code(() => db.get('victim'))).toBe('EIO');
    expect(code(() => db.read(() => db.getView('victim')))).toBe('EIO');
    expect(code(() => [...db.range()])).toBe('EIO');
    expect(db.has('victim')).toBe(true);
    db.put('victim', 'rewritten');
    expect(td.decode(db.get('victim'))).toBe('rewritten');
    expect(td.decode(db.get('neighbour'))).toBe('fine');
    db.delete('padding'); // its record touched the poisoned block too: delete clears it
    expect([...db.range()].map(([k]) => td.decode(k))).toEqual(['neighbour', 'victim']);
    db.close();
  });
});
