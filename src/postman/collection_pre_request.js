// Keyport: gets an access token with the client credentials grant when
// there is none or it expires within __RENEW_MARGIN_S__ s, and stores it in the collection
// variables `access_token` and `token_expires_at` (ms since the epoch). The
// token request itself and the public discovery documents need none.
const path = pm.request.url.getPath();
const needsToken = !path.endsWith('/oauth/token') && !path.includes('/.well-known/');
const token = pm.collectionVariables.get('access_token');
const expiresAt = Number(pm.collectionVariables.get('token_expires_at') || 0);
if (needsToken && (!token || expiresAt - Date.now() < __RENEW_MARGIN_MS__)) {
    const clientId = pm.variables.get('client_id');
    const clientSecret = pm.variables.get('client_secret');
    if (!clientId || !clientSecret) {
        throw new Error('Keyport: paste your key into the collection variables client_id and client_secret (Variables tab)');
    }
    const base64 = require('btoa');
    pm.sendRequest({
        url: pm.variables.get('base_url') + '/oauth/token',
        method: 'POST',
        header: [
            { key: 'Authorization', value: 'Basic ' + base64(clientId + ':' + clientSecret) },
            { key: 'Content-Type', value: 'application/x-www-form-urlencoded' },
            { key: 'Accept', value: 'application/json' }
        ],
        body: {
            mode: 'urlencoded',
            urlencoded: [{ key: 'grant_type', value: 'client_credentials' }]
        }
    }, function (err, res) {
        // A test, so a refused key shows in the Test Results (and fails newman).
        pm.test('Keyport issued an access token for client_id and client_secret', function () {
            pm.expect(err, 'the token request failed').to.equal(null);
            pm.expect(res.code, 'POST /oauth/token answered ' + res.text()).to.equal(200);
        });
        if (!err && res.code === 200) {
            const body = res.json();
            pm.collectionVariables.set('access_token', body.access_token);
            pm.collectionVariables.set('token_expires_at', String(Date.now() + body.expires_in * 1000));
        }
    });
}
