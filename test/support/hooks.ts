import { mkdirSync, writeFileSync } from 'node:fs';
import { contract } from './contract.ts';
import { closeSharedSystem } from './system.ts';

export const mochaHooks = {
  async afterAll() {
    await closeSharedSystem();
    // Every answer the tests received from a service, held to that service's OpenAPI document.
    console.log(`  contract: ${contract.checked} answers checked against the OpenAPI document, ${contract.violations.length} broke it`);
    if (contract.violations.length > 0) {
      mkdirSync('test-artifacts', { recursive: true });
      writeFileSync('test-artifacts/contract-violations.json', `${JSON.stringify(contract.violations, null, 2)}\n`);
      const distinct = [...new Set(contract.violations)];
      throw new Error(
        `${contract.violations.length} of ${contract.checked} answers broke the OpenAPI document (all in test-artifacts/contract-violations.json):\n` +
          distinct.slice(0, 40).map((v) => `  ${v}`).join('\n'),
      );
    }
  },
};
