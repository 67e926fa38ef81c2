pm.test('status is 201', function () {
    pm.response.to.have.status(201);
});
const body = pm.response.json();
pm.test('one record was stored', function () {
    pm.expect(body.collection).to.eql(pm.variables.get('collection'));
    pm.expect(body.count).to.eql(1);
    pm.expect(body.ids).to.be.an('array').with.lengthOf(1);
    pm.expect(body.ids[0]).to.be.a('string');
    pm.expect(body.created_at).to.be.a('number');
});
pm.test('the answer is not a replay', function () {
    pm.expect(pm.response.headers.has('Idempotent-Replayed')).to.eql(false);
});
if (Array.isArray(body.ids) && body.ids.length === 1) {
    pm.collectionVariables.set('record_id', body.ids[0]);
}
