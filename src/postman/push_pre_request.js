// A fresh Idempotency-Key for this push; the replay request sends it again.
    pm.collectionVariables.set('idempotency_key', pm.variables.replaceIn('{{$guid}}'));
