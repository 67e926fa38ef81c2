pm.test('status is 201', function () {
    pm.response.to.have.status(201);
});
pm.test('the original answer is replayed', function () {
    pm.expect(pm.response.headers.get('Idempotent-Replayed')).to.eql('true');
});
const body = pm.response.json();
pm.test('nothing new was stored', function () {
    pm.expect(body.ids).to.be.an('array').with.lengthOf(1);
    pm.expect(body.ids[0]).to.eql(pm.variables.get('record_id'));
});
